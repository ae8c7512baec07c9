"""Parquet I/O on local paths or any pyarrow filesystem URI: read a unit, write a part atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from workers.unit import Unit


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI such as s3://bucket/prefix or file:///data."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError):
        return pafs.LocalFileSystem(), os.path.abspath(uri)


def absolute_uri(uri: str) -> str:
    """A local path (or file:// URI) as an absolute path with symlinks resolved, so a job means
    the same files from any working directory; any other URI as given, without a trailing /."""
    if "://" in uri and not uri.startswith("file://"):
        return uri.rstrip("/") if not uri.endswith("://") else uri
    path = uri.removeprefix("file://")
    return os.path.realpath(os.path.expanduser(path))


def join(base_uri: str, name: str) -> str:
    return base_uri.rstrip("/") + "/" + name


def file_version(f: pa.NativeFile, info: pafs.FileInfo) -> str:
    """What identifies an open Parquet file's content: its size, its modification time and a hash
    of its footer (row groups' offsets, sizes and statistics). A file rewritten with other rows
    keeps none of them, even with the same name, row count and row groups."""
    size = f.size()
    (footer_len,) = struct.unpack("<i", f.read_at(4, size - 8))  # the footer ends in its length, then PAR1
    footer = hashlib.sha1(f.read_at(footer_len + 8, size - footer_len - 8)).hexdigest()[:16]
    return f"size={size},mtime_ns={info.mtime_ns},footer={footer}"


def read_unit(unit: Unit, batch_rows: int = 65536) -> pa.Table:
    """The unit's rows. Batches are decoded in order and reading stops at the unit's last row,
    so a piece of a big row group does not decode the rest of it."""
    fs, path = resolve(unit.uri)
    end = unit.offset + unit.rows
    batches, seen = [], 0
    with fs.open_input_file(path) as f:
        if unit.version and (found := file_version(f, fs.get_file_info(path))) != unit.version:
            raise ValueError(
                f"{unit.uri} changed since the job was planned (planned {unit.version}, found {found}); "
                "its rows are not labelled: start a new job on the new input"
            )
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=list(unit.row_groups)):
            lo, hi = max(unit.offset - seen, 0), min(end - seen, batch.num_rows)
            if hi > lo:
                batches.append(batch.slice(lo, hi - lo))
            seen += batch.num_rows
            if seen >= end:
                break
        table = pa.Table.from_batches(batches, schema=pf.schema_arrow)
    if table.num_rows != unit.rows:
        raise ValueError(
            f"{unit.uri}: row groups {list(unit.row_groups)} hold {seen} rows, the plan expected "
            f"{unit.rows} from row {unit.offset} of them; the file changed since the job was planned"
        )
    return table


def part_name(unit_id: str) -> str:
    return f"part-{unit_id}.parquet"


# A part file's Parquet metadata key for the job's record (JSON with at least its job id).
PART_METADATA_KEY = b"fewshot_jobs"
# Temporary files start with this, then the id of the job that writes them.
TMP = "_tmp-"


def _write_atomically(fs: pafs.FileSystem, tmp: str, final: str, write: Callable[[pa.NativeFile], object]) -> None:
    """``write`` so that readers never see half a file. On a local disk: into ``tmp``, then a
    rename to ``final``; on any failure (a full disk, a lost mount, an interrupt) the temporary
    file is removed. On an object store, which has no rename (a move is a copy and a delete):
    into memory first, then one upload of the complete object to ``final``, which no reader sees
    until the upload completes; a failure before that leaves nothing."""
    if not isinstance(fs, pafs.LocalFileSystem):
        buffer = pa.BufferOutputStream()
        write(buffer)
        data = buffer.getvalue()  # a part is one unit's rows: megabytes at most
        with fs.open_output_stream(final) as out:
            out.write(data)
        return
    try:
        with fs.open_output_stream(tmp) as out:
            write(out)
        fs.move(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.delete_file(tmp)
        raise


def write_part(table: pa.Table, output_uri: str, unit_id: str, metadata: dict[str, Any]) -> str:
    """Write the unit's output atomically (a unit written twice, at-least-once delivery, ends as
    one identical file); ``metadata`` (with the job id) goes in the Parquet footer."""
    fs, root = resolve(output_uri)
    final = join(root, part_name(unit_id))
    tmp = join(root, f"{TMP}{metadata.get('job_id', 'unknown')}-{unit_id}-{uuid.uuid4().hex[:8]}.parquet")
    meta = dict(table.schema.metadata or {})
    meta[PART_METADATA_KEY] = json.dumps(metadata, sort_keys=True).encode()
    _write_atomically(fs, tmp, final, lambda out: pq.write_table(table.replace_schema_metadata(meta), out))
    return final


def write_text(output_uri: str, name: str, text: str, job_id: str) -> str:
    """Write ``name`` atomically for the job ``job_id`` (its temporary file is named after it)."""
    fs, root = resolve(output_uri)
    path = join(root, name)
    _write_atomically(
        fs, join(root, f"{TMP}{job_id}-{uuid.uuid4().hex[:8]}-{name}"), path, lambda out: out.write(text.encode())
    )
    return path


def read_text(output_uri: str, name: str) -> str | None:
    fs, root = resolve(output_uri)
    path = join(root, name)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()
