"""The part files of a finished job checked against the queue's record, so that the report's
rows are the rows on storage: a done unit's part must hold its rows, and nothing else stays."""

from __future__ import annotations

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from workers.parquet_io import TMP, join, part_name, resolve


def reconcile(output: str, job_id: str, planned: dict[str, int], done: set[str]) -> dict[str, str]:
    """Removes the job's leftover temporary files and the part files of units that are not done (a
    straggler's, or from a run that was cut short); returns the done units whose part file is
    missing or does not hold the unit's rows, with why: they are not done after all."""
    fs, root = resolve(output)
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(root)) if i.type == pafs.FileType.File}
    expected = {part_name(u): u for u in planned}
    for name in names:
        if name.startswith(f"{TMP}{job_id}-") or (name in expected and expected[name] not in done):
            fs.delete_file(join(root, name))
    bad: dict[str, str] = {}
    for unit in sorted(done):
        name = part_name(unit)
        if name not in names:
            bad[unit] = f"recorded done but its part file {name} is missing"
            continue
        with fs.open_input_file(join(root, name)) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows != planned.get(unit):
            bad[unit] = f"its part file {name} holds {rows} rows, the unit has {planned.get(unit)}"
    return bad
