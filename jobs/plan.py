"""Planning a classify job: list the input Parquet files, validate them all, cut units.

Everything that can be checked before the job runs is checked here, and every problem is
reported at once: missing or mistyped columns, corrupt or non-Parquet files. Unit ids are a
pure function of (file, row range), so a re-run or a resume plans the same units.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import os
import struct
from dataclasses import dataclass, field, replace

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.errors import PlanError
from workers.input_columns import combined_schema, part_type
from workers.job_spec import DEFAULT_UNIT_ROWS, Columns
from workers.labels import OUTPUT_FIELDS
from workers.parquet_io import file_version, resolve
from workers.unit import Unit

STRING_TYPES = (pa.string(), pa.large_string())
# The job's last units (one per encode stream) are cut in this many pieces: streams that run out
# of work early share the end of the job instead of waiting for the last full units.
TAIL_PIECES = 4


@dataclass(frozen=True)
class Plan:
    files: tuple[str, ...]
    units: tuple[Unit, ...]
    rows: int
    schema: pa.Schema
    empty_files: tuple[str, ...] = ()
    bounds: dict[str, list[int]] = field(default_factory=dict)  # file -> row where each row group starts, then its rows
    versions: dict[str, str] = field(default_factory=dict)  # file -> what identifies its content (file_version)


def _uri(input_uri: str, fs: pafs.FileSystem, path: str) -> str:
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    scheme = input_uri.split("://", 1)[0]
    return f"{scheme}://{path}"


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _local_files(root: str) -> list[str]:
    """Files under a local folder, following symlinks but reading each folder and each physical
    file once (a link back to a parent is not a loop; two links to one file are one file). A
    folder that cannot be listed is refused, never skipped: its files would be missing rows."""
    seen: set[str] = set()
    files: set[str] = set()
    unreadable: list[str] = []
    walk = os.walk(root, followlinks=True, onerror=lambda exc: unreadable.append(f"{exc.filename} ({exc.strerror})"))
    for folder, subfolders, names in walk:
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not _hidden(d))
        files |= {os.path.realpath(os.path.join(folder, n)) for n in names if not _hidden(n)}
    if unreadable:
        raise PlanError(
            f"{len(unreadable)} folder(s) of the input {root} cannot be read, so their files would be left "
            f"out: {', '.join(sorted(unreadable))}; give this user read and execute permission on them, or "
            "move them out of the input"
        )
    return sorted(files)


def _remote_files(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    out = []
    for i in infos:
        rel = i.path[len(path) :].lstrip("/")
        if i.type == pafs.FileType.File and not any(_hidden(part) for part in rel.split("/")):
            out.append(i.path)
    return sorted(out)


def list_files(input_uri: str) -> list[str]:
    """Parquet files under a file or directory URI, sorted, each physical file once; hidden and
    _-prefixed names are skipped."""
    fs, path = resolve(input_uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise PlanError(f"input {input_uri} does not exist")
    if info.type == pafs.FileType.File:
        return [_uri(input_uri, fs, path)]
    local = isinstance(fs, pafs.LocalFileSystem)
    found = _local_files(path) if local else _remote_files(fs, path)
    files = [f for f in found if f.endswith(".parquet")]
    others = [f for f in found if not f.endswith(".parquet")]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise PlanError(
            f"input {input_uri} holds files that are not .parquet: {shown}; move them away "
            f"(names starting with _ or . are ignored)"
        )
    if not files:
        raise PlanError(f"input {input_uri} holds no .parquet files")
    return [_uri(input_uri, fs, p) for p in files]


def check_apart(input_uri: str, output_uri: str) -> None:
    """The output must not be the input, inside it, or around it: a job would read its own parts."""
    a, b = input_uri.rstrip("/"), output_uri.rstrip("/")
    if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
        raise PlanError(
            f"output {output_uri} overlaps input {input_uri} (the same folder, or one inside the other); "
            f"write the output to a folder outside the input"
        )


def unit_id(uri: str, start: int, rows: int) -> str:
    return hashlib.sha1(f"{uri}|{start}|{start + rows}".encode()).hexdigest()[:20]


def _is_string(t: pa.DataType) -> bool:
    """Strings, or categorical strings (pandas' category dtype), or an all-null column."""
    return t in STRING_TYPES or t == pa.null() or (pa.types.is_dictionary(t) and t.value_type in STRING_TYPES)


def _check_schema(uri: str, schema: pa.Schema, columns: Columns) -> list[str]:
    problems = []
    wanted = [(columns.text, True), (columns.tenant, True), (columns.id, False)]
    for name, must_be_string in wanted:
        if name is None:
            continue
        if name not in schema.names:
            problems.append(f"{uri}: no column {name!r} (columns: {', '.join(schema.names)})")
        elif must_be_string and not _is_string(schema.field(name).type):
            problems.append(
                f"{uri}: column {name!r} is {schema.field(name).type}, expected string (cast it when writing the file)"
            )
    reserved = {f.name for f in OUTPUT_FIELDS} & set(schema.names)
    if reserved:
        problems.append(f"{uri}: columns {sorted(reserved)} clash with the output columns; rename them")
    return problems


def _type_conflicts(schemas: dict[str, pa.Schema]) -> list[str]:
    """A problem per column whose types in different files do not unify, as ``jobs query`` unifies
    the labelled part files (which keep every input column, dictionaries decoded): such a job would
    label every row and then leave an output that cannot be read as one table."""
    seen: dict[str, dict[pa.DataType, str]] = {}  # column -> its type in the parts -> the first file with it
    for uri, file_schema in schemas.items():
        for f in file_schema:
            seen.setdefault(f.name, {}).setdefault(part_type(f.type), uri)
    problems = []
    for name, types in seen.items():
        try:
            combined_schema([pa.schema([pa.field(name, t)]) for t in types])
        except ValueError:
            found = ", ".join(f"{t} in {uri}" for t, uri in types.items())
            problems.append(
                f"column {name!r} has types that do not combine across files ({found}); "
                "the labelled output could not be read as one table: write it with one type in every file"
            )
    return problems


def _bounds(group_rows: list[int]) -> list[int]:
    """Row index where each row group starts, then the file's row count."""
    return [0, *itertools.accumulate(group_rows)]


def _split(start: int, rows: int, pieces: int) -> list[tuple[int, int]]:
    """[start, start + rows) as up to ``pieces`` near-equal (start, rows) ranges."""
    k = min(pieces, rows)
    return [(start + rows * i // k, rows * (i + 1) // k - rows * i // k) for i in range(k)]


def _ranges(bounds: list[int], unit_rows: int) -> list[tuple[int, int]]:
    """A file's (start, rows) units: consecutive row groups packed up to ``unit_rows`` rows; a
    row group larger than that is cut into near-equal pieces, which may pack with the next group."""
    out: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(bounds):
        for start, rows in _split(a, b - a, -(-(b - a) // unit_rows)):
            if out and out[-1][1] + rows <= unit_rows:
                out[-1] = (out[-1][0], out[-1][1] + rows)
            else:
                out.append((start, rows))
    return out


def _unit(uri: str, bounds: list[int], start: int, rows: int, version: str) -> Unit:
    """The unit of rows [start, start + rows) of a file whose row groups start at ``bounds``."""
    first = bisect.bisect_right(bounds, start) - 1
    last = bisect.bisect_left(bounds, start + rows) - 1
    groups = tuple(g for g in range(first, last + 1) if bounds[g + 1] > bounds[g])
    return Unit(unit_id(uri, start, rows), uri, groups, start, rows, start - bounds[groups[0]], version)


def plan(input_uri: str, columns: Columns, unit_rows: int = DEFAULT_UNIT_ROWS) -> Plan:
    """Validate the whole input (every problem reported at once) and cut it into units."""
    if unit_rows < 1:
        raise PlanError(f"unit rows must be >= 1, got {unit_rows}")
    files = list_files(input_uri)
    problems: list[str] = []
    units: list[Unit] = []
    empty: list[str] = []
    bounds: dict[str, list[int]] = {}
    schemas: dict[str, pa.Schema] = {}  # of every readable file, in listing order
    versions: dict[str, str] = {}
    for uri in files:
        fs, path = resolve(uri)
        try:
            with fs.open_input_file(path) as f:
                meta = pq.ParquetFile(f).metadata
                file_schema = pq.ParquetFile(f).schema_arrow
                versions[uri] = file_version(f, fs.get_file_info(path))
        except (pa.ArrowInvalid, OSError, struct.error) as exc:
            problems.append(f"{uri}: not a readable Parquet file ({exc})")
            continue
        problems += _check_schema(uri, file_schema, columns)
        schemas[uri] = file_schema
        if meta.num_rows == 0:
            empty.append(uri)
            continue
        bounds[uri] = _bounds([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        units += [_unit(uri, bounds[uri], a, n, versions[uri]) for a, n in _ranges(bounds[uri], unit_rows)]
    problems += _type_conflicts(schemas)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise PlanError(f"{len(problems)} problem(s) with the input, nothing was started:\n  {shown}")
    schema = next(iter(schemas.values()))  # list_files found at least one file, and all were readable
    return Plan(tuple(files), tuple(units), sum(u.rows for u in units), schema, tuple(empty), bounds, versions)


def cut_tail(p: Plan, streams: int) -> Plan:
    """The plan with its last ``streams`` units each cut in ``TAIL_PIECES``: the streams that run
    out of work first share the end of the job instead of waiting for the last full units."""
    if streams < 0:
        raise PlanError(f"streams must be >= 0, got {streams}")
    keep = max(len(p.units) - streams, 0)
    pieces = [
        _unit(u.uri, p.bounds[u.uri], a, n, u.version)
        for u in p.units[keep:]
        for a, n in _split(u.start, u.rows, TAIL_PIECES)
    ]
    return replace(p, units=p.units[:keep] + tuple(pieces))


def encodable_rows(p: Plan, columns: Columns, tenants: set[str]) -> int:
    """About how many planned rows need encoding: those of a tenant that has a head (``tenants``),
    read from the tenant column alone, in batches. With one tenant for every row (``--tenant``),
    the rows whose text is not null, from the footers' statistics. What decides int8 for a job
    whose rows mostly need no encoding (unknown tenants, no text)."""
    import pyarrow.compute as pc

    known = pa.array(sorted(tenants), pa.string())
    total = 0
    for uri in p.files:
        fs, path = resolve(uri)
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            if columns.fixed_tenant or columns.tenant is None:
                total += pf.metadata.num_rows - _null_count(pf, columns.text)
                continue
            for batch in pf.iter_batches(batch_size=65536, columns=[columns.tenant]):
                tenant = batch.column(0).cast(pa.string())
                total += pc.sum(pc.is_in(tenant, value_set=known)).as_py() or 0
    return total


def _null_count(pf: pq.ParquetFile, column: str) -> int:
    """The column's nulls from the row groups' statistics (0 where a writer left none)."""
    index = pf.schema_arrow.get_field_index(column)
    meta = pf.metadata
    nulls = 0
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        nulls += stats.null_count if stats is not None and stats.has_null_count else 0
    return nulls
