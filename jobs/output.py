"""Claiming a job's output folder: atomically, for one job, and never over files it did not write.

A claim is taken twice: in Redis (``SET NX`` on the folder's URI, atomic for local paths and
object stores alike, for jobs that share a Redis) and, on a local filesystem, by creating the
``_JOB`` marker with O_EXCL (atomic for jobs that do not). An object store has no atomic
create-if-absent, so there the Redis claim is the lock and ``_JOB`` a marker for people.
"""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import redis

from jobs.errors import JobError, StorageError
from prune.errors import BadInput
from workers.parquet_io import join, read_text, resolve, write_text

MARKER = "_JOB"
# What a classify job writes in its output folder; --overwrite removes these, nothing else.
JOB_FILES = ("part-", "_tmp-", "_report.json", "_SUCCESS", MARKER)


def _ours(name: str) -> bool:
    return any(name == f or (f.endswith("-") and name.startswith(f)) for f in JOB_FILES)


def _listing(output: str, create: bool) -> list[str]:
    """The names in the output folder (made if ``create``); a clear error when it cannot be one."""
    fs, root = resolve(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise BadInput(f"output {output} is a file; expected a folder (a new one, or one this job wrote)")
    if info.type == pafs.FileType.NotFound and not create:
        _check_creatable(fs, root, output)
        return []
    try:
        fs.create_dir(root, recursive=True)
        return [i.base_name for i in fs.get_file_info(pafs.FileSelector(root))]
    except OSError as exc:
        raise StorageError(f"cannot create or list the output folder {output}: {exc}") from exc


def _check_creatable(fs: pafs.FileSystem, root: str, output: str) -> None:
    """On a local filesystem: the nearest existing parent is a folder we may write in."""
    if not isinstance(fs, pafs.LocalFileSystem):
        return
    parent = os.path.dirname(root)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise StorageError(f"cannot create the output folder {output}: {parent} is not a writable folder")


def _clear(output: str, names: list[str]) -> None:
    fs, root = resolve(output)
    for name in names:
        fs.delete_file(join(root, name))


def claim_output(
    client: redis.Redis, prefix: str, output: str, job_id: str, resume: bool, overwrite: bool, take: bool = True
) -> None:
    """Make ``output`` this job's folder, or fail saying whose it is and what to do. With
    ``take=False``, only check that it could be (before any work), changing nothing."""
    names = _listing(output, create=take)
    if "_SUCCESS" in names and not overwrite:
        raise JobError(f"output {output} already holds a finished job (_SUCCESS); choose another --output")
    owner = (read_text(output, MARKER) or "").strip() if MARKER in names else None
    foreign = [n for n in names if not _ours(n)]
    if foreign:
        raise JobError(
            f"output {output} holds files no classify job wrote ({', '.join(sorted(foreign)[:5])}); "
            f"choose an empty or new --output folder"
        )
    if overwrite and owner != job_id:
        if not take:
            return
        _clear(output, names)
        client.delete(_key(prefix, output))
        names, owner = [], None
    if owner not in (None, job_id) or (owner is None and not resume and names):
        who = f"job {owner}" if owner else "another job (its part files are there)"
        raise JobError(
            f"output {output} belongs to {who}; resume it with --resume {owner or 'JOB_ID'}, choose another "
            f"--output, or pass --overwrite to replace its files"
        )
    if take:
        _take(client, prefix, output, job_id)


def _key(prefix: str, output: str) -> str:
    return f"{prefix}:output:{output}"


def _take(client: redis.Redis, prefix: str, output: str, job_id: str) -> None:
    if not client.set(_key(prefix, output), job_id, nx=True):
        held = (client.get(_key(prefix, output)) or b"").decode()
        if held != job_id:
            raise JobError(f"output {output} was claimed meanwhile by job {held}; choose another --output")
    fs, root = resolve(output)
    if isinstance(fs, pafs.LocalFileSystem):
        try:
            fd = os.open(join(root, MARKER), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            fd = None
        except OSError as exc:
            raise StorageError(f"cannot write to the output folder {output}: {exc}") from exc
        if fd is None:
            if (read_text(output, MARKER) or "").strip() != job_id:
                raise JobError(f"output {output} was claimed meanwhile by another job; choose another --output")
            return
        with os.fdopen(fd, "w") as f:
            f.write(job_id)
    else:
        write_text(output, MARKER, job_id)
