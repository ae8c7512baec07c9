"""Cutting files into units: row groups packed, big row groups cut in pieces, a finer tail; every
row read exactly once, in order."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.plan import TAIL_PIECES, Columns, Plan, cut_tail, plan
from workers.parquet_io import read_unit


def write_groups(path: Path, sizes: list[int]) -> list[str]:
    """One Parquet file whose row groups hold ``sizes`` rows; returns the ids in file order."""
    ids: list[str] = []
    schema = pa.schema([("id", pa.string()), ("tenant", pa.string()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for n in sizes:
            rid = [f"{path.stem}-{len(ids) + i:06d}" for i in range(n)]
            writer.write_table(pa.table({"id": rid, "tenant": ["acme"] * n, "text": ["hi"] * n}, schema=schema))
            ids += rid
    assert pq.ParquetFile(path).metadata.num_row_groups == len(sizes)
    return ids


def read_ids(p: Plan) -> list[str]:
    return [i for u in p.units for i in read_unit(u).column("id").to_pylist()]


LAYOUTS = [
    [1000],  # one big row group, as pandas writes it
    [700, 50, 50, 200],  # a big group whose last piece packs with the small ones after it
    [100, 100, 100, 100, 100],
    [301, 1, 299, 600],
]


@pytest.mark.parametrize("sizes", LAYOUTS)
@pytest.mark.parametrize("unit_rows", [1, 97, 300, 5000])
def test_every_row_once_in_order_and_units_bounded(tmp_path: Path, sizes: list[int], unit_rows: int) -> None:
    ids = write_groups(tmp_path / "a.parquet", sizes)
    p = plan(str(tmp_path), Columns(), unit_rows)
    assert read_ids(p) == ids
    assert p.rows == len(ids) == sum(u.rows for u in p.units)
    assert all(u.rows <= max(unit_rows, 1) for u in p.units)
    assert [u.id for u in p.units] == [u.id for u in plan(str(tmp_path), Columns(), unit_rows).units]
    assert len({u.id for u in p.units}) == len(p.units)


def test_a_big_row_group_is_cut_in_near_equal_pieces(tmp_path: Path) -> None:
    write_groups(tmp_path / "a.parquet", [1000])
    units = plan(str(tmp_path), Columns(), unit_rows=300).units
    assert [(u.start, u.rows, u.row_groups, u.offset) for u in units] == [
        (0, 250, (0,), 0),
        (250, 250, (0,), 250),
        (500, 250, (0,), 500),
        (750, 250, (0,), 750),
    ]


def test_a_piece_packs_with_the_small_groups_after_it(tmp_path: Path) -> None:
    write_groups(tmp_path / "a.parquet", [700, 50, 50, 200])
    units = plan(str(tmp_path), Columns(), unit_rows=300).units
    assert [(u.rows, u.row_groups, u.offset) for u in units] == [
        (233, (0,), 0),
        (233, (0,), 233),
        (284, (0, 1), 466),
        (250, (2, 3), 0),
    ]


@pytest.mark.parametrize("streams", [0, 1, 3, 50])
def test_cut_tail_splits_the_last_units_per_stream(tmp_path: Path, streams: int) -> None:
    ids = write_groups(tmp_path / "a.parquet", [100] * 6) + write_groups(tmp_path / "b.parquet", [100] * 4)
    p = plan(str(tmp_path), Columns(), unit_rows=200)
    cut = cut_tail(p, streams)
    assert read_ids(cut) == ids  # same rows, same order
    cut_units = min(streams, len(p.units))
    assert cut.units[: len(p.units) - cut_units] == p.units[: len(p.units) - cut_units]
    assert [u.rows for u in cut.units[len(p.units) - cut_units :]] == [200 // TAIL_PIECES] * TAIL_PIECES * cut_units
    assert [u.id for u in cut.units] == [u.id for u in cut_tail(plan(str(tmp_path), Columns(), 200), streams).units]


def test_cut_tail_never_makes_empty_units(tmp_path: Path) -> None:
    write_groups(tmp_path / "a.parquet", [2, 1])
    cut = cut_tail(plan(str(tmp_path), Columns(), unit_rows=2), streams=2)
    assert [u.rows for u in cut.units] == [1, 1, 1]


def test_a_unit_of_a_file_changed_since_planning_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    write_groups(path, [1000])
    units = plan(str(tmp_path), Columns(), unit_rows=300).units
    assert len(read_unit(units[0])) == 250  # as planned
    write_groups(path, [600])
    for unit in (units[0], units[-1]):  # a unit the new file still holds is refused too: other rows
        with pytest.raises(ValueError, match="changed since the job was planned"):
            read_unit(unit)


def test_a_file_rewritten_with_the_same_shape_is_a_changed_file(tmp_path: Path) -> None:
    """New rows, same name, row count and row groups: the unit is refused, not read as the old one."""
    path = tmp_path / "a.parquet"
    write_groups(path, [100, 100])
    before = plan(str(tmp_path), Columns(), unit_rows=100)
    pq.write_table(
        pa.table({"tenant": ["beta"] * 200, "text": [f"new {i}" for i in range(200)]}), path, row_group_size=100
    )
    after = plan(str(tmp_path), Columns(), unit_rows=100)
    assert [u.id for u in after.units] == [u.id for u in before.units]  # the shape alone cannot tell
    assert after.versions[str(path)] != before.versions[str(path)]
    with pytest.raises(ValueError, match="changed since the job was planned"):
        read_unit(before.units[0])
