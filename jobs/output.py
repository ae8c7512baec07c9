"""Claiming a job's output folder: atomically, for one job, and never over files it did not write.

A claim is taken twice: in Redis (``SET NX`` on the folder's URI, atomic for local paths and
object stores alike, for jobs that share a Redis) and, on a local filesystem, by creating the
``_JOB`` marker with O_EXCL (atomic for jobs that do not). An object store has no atomic
create-if-absent, so there the Redis claim is the lock and ``_JOB`` a marker for people.

Ownership is proven from the files, never guessed from their names (``survey``): a part file
carries its job id in its Parquet metadata, ``_report.json`` and ``_SUCCESS`` hold it, and a
temporary file is named after it. ``--overwrite`` deletes only proven files of jobs that have
finished; anything else in the folder refuses the claim, naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import redis

from jobs.errors import JobError, StorageError
from prune.errors import BadInput
from workers.connection import text
from workers.parquet_io import PART_METADATA_KEY, TMP, join, part_name, read_text, resolve, write_text
from workers.queue import WorkQueue
from workers.tenant_store import TENANT_ID

MARKER = "_JOB"
REPORT = "_report.json"
SUCCESS = "_SUCCESS"
# Names a classify job writes; a folder holding anything else is not a job's.
JOB_FILES = ("part-", TMP, REPORT, SUCCESS, MARKER)

# KEYS: the output's claim. ARGV: this job, then the jobs it may replace. 1 if taken.
_TAKE = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
for i = 2, #ARGV do
  if held == ARGV[i] then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
end
return 0
"""


def _job_like(name: str) -> bool:
    return any(name == f or (f.endswith("-") and name.startswith(f)) for f in JOB_FILES)


@dataclass(frozen=True)
class Survey:
    """What an output folder holds: its names, and the job proven to have written each one."""

    names: tuple[str, ...]
    writers: dict[str, str]  # name -> id of the job whose writing it is proven to be
    marker: str | None  # the job named by _JOB

    @property
    def unproven(self) -> list[str]:
        return sorted(n for n in self.names if n not in self.writers)

    @property
    def jobs(self) -> set[str]:
        return set(self.writers.values())


def _job_id(text: str | None) -> str | None:
    value = (text or "").strip()
    return value if TENANT_ID.fullmatch(value) else None


def _part_writer(fs: pafs.FileSystem, path: str) -> str | None:
    """The job id in a part file's Parquet metadata; None when it is not a readable part of a job."""
    try:
        with fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata.metadata or {}
        return _job_id(str(json.loads(meta[PART_METADATA_KEY]).get("job_id")))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None


def _report_writer(output: str) -> str | None:
    try:
        report = json.loads(read_text(output, REPORT) or "")
        return _job_id(report.get("job_id")) if isinstance(report, dict) else None
    except (OSError, ValueError):
        return None


def survey(output: str, names: list[str]) -> Survey:
    """Prove, file by file, which job wrote what ``output`` holds (reads every part's footer)."""
    fs, root = resolve(output)
    kinds = {i.base_name: i.type for i in fs.get_file_info([join(root, n) for n in names])}
    files = [n for n in names if kinds.get(n) == pafs.FileType.File]
    marker = _job_id(read_text(output, MARKER)) if MARKER in files else None
    writers: dict[str, str] = {}
    for name in files:
        if name.startswith("part-") and name.endswith(".parquet"):
            writer = _part_writer(fs, join(root, name))
        elif name == REPORT:
            writer = _report_writer(output)
        elif name == MARKER:
            writer = marker
        else:
            continue
        if writer:
            writers[name] = writer
    if SUCCESS in files:  # holds its job's id; an empty one (older jobs) only beside that job's report and marker
        success = read_text(output, SUCCESS) or ""
        writer = _job_id(success) or (marker if marker and writers.get(REPORT) == marker and not success else None)
        if writer:
            writers[SUCCESS] = writer
    for name in files:
        if name.startswith(TMP) and (
            job := next((j for j in set(writers.values()) if name.startswith(f"{TMP}{j}-")), None)
        ):
            writers[name] = job
    return Survey(tuple(names), writers, marker)


def _listing(output: str, create: bool) -> list[str]:
    """The names in the output folder (made if ``create``); a clear error when it cannot be one."""
    fs, root = resolve(output)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise BadInput(f"output {output} is a file; expected a folder (a new one, or one this job wrote)")
    if info.type == pafs.FileType.NotFound and not create:
        _check_creatable(fs, root, output)
        return []
    if not create:
        _check_writable(fs, root, output)
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


def _check_writable(fs: pafs.FileSystem, root: str, output: str) -> None:
    """On a local filesystem: an existing output folder we may write in (a read-only mount is not)."""
    if isinstance(fs, pafs.LocalFileSystem) and not os.access(root, os.W_OK | os.X_OK):
        raise StorageError(
            f"cannot write to the output folder {output} (read-only, or no permission for this user); "
            "choose a writable --output"
        )


def _unfinished(client: redis.Redis, prefix: str, job_id: str) -> str | None:
    """Why the job ``job_id`` of this Redis may still write (its units not all done or dead), or None."""
    queue = WorkQueue(client, prefix, job_id)
    if not queue.exists():
        return None
    progress = queue.progress()
    if progress.done + progress.dead >= progress.total:
        return None
    return f"{progress.done + progress.dead} of {progress.total} units finished"


def claim_output(
    client: redis.Redis, prefix: str, output: str, job_id: str, resume: bool, overwrite: bool, take: bool = True
) -> None:
    """Make ``output`` this job's folder, or fail saying whose it is and what to do. With
    ``take=False``, only check that it could be (before any work), changing nothing."""
    names = _listing(output, create=take)
    held = text(client.get(_key(prefix, output)) or b"") or None
    if overwrite:
        _check_overwrite(client, prefix, output, job_id, names, held, take)
        return
    if SUCCESS in names:
        raise JobError(f"output {output} already holds a finished job (_SUCCESS); choose another --output")
    foreign = sorted(n for n in names if not _job_like(n))
    if foreign:
        raise JobError(
            f"output {output} holds files no classify job wrote ({', '.join(foreign[:5])}); "
            f"choose an empty or new --output folder"
        )
    owner = _job_id(read_text(output, MARKER)) if MARKER in names else None
    if MARKER in names and owner is None:
        raise JobError(f"output {output} holds a {MARKER} file that names no job; choose another --output")
    # a claim left by a finished job on a folder emptied since is stale; any other claim is an owner
    stale = {held} if held and held != job_id and not names and not _unfinished(client, prefix, held) else set()
    owner = owner or (held if held != job_id and not stale else None)
    if owner not in (None, job_id) or (owner is None and not resume and names):
        who = f"job {owner}" if owner else "another job (its part files are there)"
        raise JobError(
            f"output {output} belongs to {who}; resume it with --resume {owner or 'JOB_ID'}, choose another "
            f"--output, or pass --overwrite to replace its files"
        )
    if take:
        _take(client, prefix, output, job_id, stale)


def _check_overwrite(
    client: redis.Redis, prefix: str, output: str, job_id: str, names: list[str], held: str | None, take: bool
) -> None:
    """--overwrite: every file proven a finished job's, then (``take``) the claim moved to this job
    and those files deleted."""
    found = survey(output, names)
    if found.unproven:
        shown = ", ".join(found.unproven[:10]) + (
            f" and {len(found.unproven) - 10} more" if len(found.unproven) > 10 else ""
        )
        raise JobError(
            f"output {output} holds files that no classify job can be proven to have written ({shown}); "
            "--overwrite deletes only a job's own files: move these away or choose another --output"
        )
    others = (found.jobs | {found.marker, held}) - {None, job_id}
    for other in sorted(o for o in others if o):
        why = _unfinished(client, prefix, other)
        if why:
            raise JobError(
                f"output {output} belongs to job {other}, which has not finished ({why}); it is never "
                f"taken, even with --overwrite: wait for it, resume it with --resume {other}, or clear it "
                f"with `jobs forget {other}` first"
            )
    if take:
        _take(client, prefix, output, job_id, {o for o in others if o}, delete=list(found.writers))


def _key(prefix: str, output: str) -> str:
    return f"{prefix}:output:{output}"


def holds(client: redis.Redis, prefix: str, output: str, job_id: str) -> bool:
    """Whether ``job_id`` still holds the output (its Redis claim, and its _JOB marker when there is
    one): a job checks it before writing its report and _SUCCESS, never over another job's."""
    if text(client.get(_key(prefix, output)) or b"") != job_id:
        return False
    marker = read_text(output, MARKER)
    return marker is None or marker.strip() == job_id


def _take(
    client: redis.Redis, prefix: str, output: str, job_id: str, replacing: set[str], delete: list[str] | None = None
) -> None:
    if not client.register_script(_TAKE)(keys=[_key(prefix, output)], args=[job_id, *sorted(replacing)]):
        held = text(client.get(_key(prefix, output)) or b"")
        raise JobError(f"output {output} was claimed meanwhile by job {held}; choose another --output")
    fs, root = resolve(output)
    for name in delete or []:
        fs.delete_file(join(root, name))
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
        write_text(output, MARKER, job_id, job_id)


# KEYS: the output's claim. ARGV: the job. 1 if it held the claim.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def release(client: redis.Redis, prefix: str, output: str, job_id: str) -> bool:
    """Drop ``job_id``'s Redis claim on ``output`` (a forgotten job); another job's stays."""
    return bool(client.register_script(_RELEASE)(keys=[_key(prefix, output)], args=[job_id]))


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
