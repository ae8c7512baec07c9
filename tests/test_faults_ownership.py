"""Red-team cases, round three: a resume over changed input, a half-created job, an unreadable
sub-folder, --overwrite guessing ownership from names or taking a running job's folder, and the
degraded messages. Each used to end in success that was not success, or in a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from jobs.errors import JobError, PlanError
from jobs.output import claim_output, holds
from tests.conftest import REPO
from tests.jobdata import read_output_ids, write_logs
from tests.test_faults import classify, jobs_cli, one_error_line
from workers.connection import connect
from workers.parquet_io import write_part, write_text
from workers.queue import WorkQueue

DIE_AT = "JOBS_TEST_DIE_AT"
LOGS = str(REPO / "examples" / "logs")


# --- a resume reads the input it planned -------------------------------------------------------


@pytest.mark.system
def test_resume_refuses_input_rewritten_with_the_same_shape_and_options_that_differ(
    tmp_path: Path, redis_url: str, heads: str
) -> None:
    """The driver dies once the job exists; the input is rewritten with new rows (same names, row
    counts and row groups). A resume used to finish with exit 0, mixing old and new rows."""
    write_logs(tmp_path / "in", files=2, rows_per_file=40, row_group=20, tenants=("acme",))
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--unit-rows", "20", "--job-id", "changed"]
    r = classify(redis_url, heads, *args, env={DIE_AT: "claimed"})
    assert r.returncode == -9 and WorkQueue(connect(redis_url), heads, "changed").progress().total > 0, r.stderr

    r = classify(redis_url, heads, "--resume", "changed", "--dtype", "int8", "--unit-rows", "7", "--tenant", "acme")
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "--dtype int8 (the job has auto)" in line and "--unit-rows 7" in line, r.stderr
    assert "--tenant acme (the job has none)" in line

    new = pa.table({"id": [f"n{i}" for i in range(40)], "tenant": ["acme"] * 40, "text": ["new rows"] * 40})
    pq.write_table(new, tmp_path / "in" / "logs-01.parquet", row_group_size=20)
    started = time.time()
    r = classify(redis_url, heads, "--resume", "changed")
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "changed since it was planned" in line and "logs-01.parquet" in line, r.stderr
    assert "logs-00.parquet" not in line and time.time() - started < 30  # refused at plan, before Ray starts
    assert not list(out.glob("part-*")) and not (out / "_SUCCESS").exists()


# --- job creation is atomic ----------------------------------------------------------------------


@pytest.mark.system
def test_a_driver_killed_inside_job_creation_leaves_a_job_that_can_be_submitted_again(
    tmp_path: Path, redis_url: str, heads: str
) -> None:
    ids = [r for t in pq.ParquetDataset(LOGS).read(columns=["id"]).column("id").to_pylist() for r in [t]]
    out = tmp_path / "out"
    args = ["--input", LOGS, "--output", str(out), "--job-id", "half"]
    r = classify(redis_url, heads, *args, env={DIE_AT: "create"})
    assert r.returncode == -9, r.stderr  # SIGKILL between the checks and the transaction that creates it
    client = connect(redis_url)
    assert not client.keys(f"{heads}:job:half:units*") and not WorkQueue(client, heads, "half").exists()
    r = classify(redis_url, heads, "--resume", "half")
    assert r.returncode == 4 and "submit it again with --job-id half" in one_error_line(r.stderr), r.stderr
    r = classify(redis_url, heads, *args)
    assert r.returncode == 0, r.stderr
    assert sorted(read_output_ids(out)) == sorted(ids) and (out / "_SUCCESS").read_text() == "half"


def test_a_half_created_job_says_how_to_clear_it_and_forget_clears_it(redis_url: str, prefix: str) -> None:
    """A job hash holding only `total` (what a driver killed inside the old, two-step creation left):
    --resume was a KeyError traceback and a new submit said "already exists, use --resume"."""
    client = connect(redis_url)
    client.hset(f"{prefix}:job:stuck", "total", 5)
    for args in (("--resume", "stuck"), ("--input", LOGS, "--output", "/tmp/never", "--job-id", "stuck")):
        r = classify(redis_url, prefix, *args)
        assert r.returncode == 2 and "jobs forget stuck" in one_error_line(r.stderr), r.stderr
    r = jobs_cli(redis_url, prefix, "forget", "stuck")
    assert r.returncode == 0 and "never fully created" in r.stdout, r.stderr
    assert not WorkQueue(client, prefix, "stuck").exists()
    r = jobs_cli(redis_url, prefix, "forget", "stuck")
    assert r.returncode == 4 and "nothing to forget" in r.stderr


def test_forget_refuses_a_job_with_unfinished_units_unless_forced(redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    q = WorkQueue(client, prefix, "open")
    assert q.create([{"id": "a"}, {"id": "b"}], {"spec": {"output": "/tmp/somewhere"}})
    client.set(f"{prefix}:output:/tmp/somewhere", "open")
    r = jobs_cli(redis_url, prefix, "forget", "open")
    assert r.returncode == 4 and "2 of 2 units unfinished" in r.stderr and "--resume open" in r.stderr
    assert jobs_cli(redis_url, prefix, "forget", "open", "--force").returncode == 0
    assert not q.exists() and client.get(f"{prefix}:output:/tmp/somewhere") is None


# --- every part of the input is read -------------------------------------------------------------


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own tmp folder is private to its user)."""
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        os.chmod(d, 0o755)
        yield Path(d)


def plan_as(uid: int, folder: Path) -> str:
    """Plan ``folder`` in a child process running as ``uid`` (no read override); its error, or ''."""
    from jobs.plan import Columns, plan

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root's privileges, plan, report, exit
        try:
            os.close(read)
            os.setgid(uid)
            os.setuid(uid)
            try:
                plan(str(folder), Columns())
                message = ""
            except PlanError as exc:
                message = f"PlanError: {exc}"
            os.write(write, message.encode() or b"planned")
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return "" if answer == "planned" else answer


def test_an_unreadable_sub_folder_is_refused_with_every_path_named() -> None:
    """As a user without read override: a folder of mode 000 under the input used to be skipped,
    and the job succeeded without its rows."""
    with shared_folder() as root:
        write_logs(root / "in", files=1, rows_per_file=10, row_group=10)
        for name in ("day2", "day3"):
            write_logs(root / "in" / name, files=1, rows_per_file=10, row_group=10)
            (root / "in" / name).chmod(0)
        try:
            uid = 65534 if os.geteuid() == 0 else os.geteuid()  # root reads anything: plan as nobody
            error = plan_as(uid, root / "in")
        finally:
            for name in ("day2", "day3"):
                (root / "in" / name).chmod(0o755)
    assert error.startswith("PlanError: 2 folder(s) of the input") and "cannot be read" in error, error
    assert f"{root}/in/day2 (Permission denied)" in error and f"{root}/in/day3" in error


# --- ownership is proven, not guessed from names -------------------------------------------------


def finished_job_output(client: redis.Redis, prefix: str, out: Path, job_id: str) -> None:
    """What a finished job leaves: its claim, a part with its id in the footer, report, _SUCCESS."""
    out.mkdir(parents=True, exist_ok=True)
    q = WorkQueue(client, prefix, job_id)
    assert q.create([{"id": "u1"}], {"spec": {"output": str(out)}})
    claim_output(client, prefix, str(out), job_id, resume=False, overwrite=False)
    write_part(pa.table({"id": ["x"]}), str(out), "u1", {"job_id": job_id, "unit": "u1"})
    write_text(str(out), "_report.json", json.dumps({"job_id": job_id}), job_id)
    write_text(str(out), "_SUCCESS", job_id, job_id)
    taken = q.take("c", block_ms=10)
    assert taken is not None
    q.ack(taken, {})


def test_overwrite_never_deletes_files_it_cannot_prove_a_job_wrote(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """A folder with no _JOB and the user's own files named like a job's: --overwrite deleted them
    all (a .docx and another tool's .snappy.parquet among them)."""
    client = connect(redis_url)
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-notes.docx").write_bytes(b"PK\x03\x04 a document")
    pq.write_table(pa.table({"a": [1]}), out / "part-00000-5f1c.snappy.parquet")  # another tool's, no job id
    (out / "_SUCCESS").write_text("")
    (out / "_tmp-draft.txt").write_text("mine")
    (out / "part-0001.parquet").mkdir()  # a folder named like a part: was "Is a directory", exit 5
    before = sorted(p.name for p in out.iterdir())
    for take in (False, True):
        with pytest.raises(JobError, match="no classify job can be proven to have written") as raised:
            claim_output(client, prefix, str(out), "newjob", resume=False, overwrite=True, take=take)
        assert all(name in str(raised.value) for name in before)
    assert sorted(p.name for p in out.iterdir()) == before


def test_overwrite_replaces_a_finished_jobs_proven_files(tmp_path: Path, redis_url: str, prefix: str) -> None:
    client = connect(redis_url)
    out = tmp_path / "out"
    finished_job_output(client, prefix, out, "old")
    (out / "_tmp-old-u9-0a1b2c3d.parquet").write_bytes(b"half a part")  # a crashed write of the same job
    with pytest.raises(JobError, match="finished job"):
        claim_output(client, prefix, str(out), "new", resume=False, overwrite=False)
    claim_output(client, prefix, str(out), "new", resume=False, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["_JOB"] and (out / "_JOB").read_text() == "new"
    assert holds(client, prefix, str(out), "new") and not holds(client, prefix, str(out), "old")


def test_a_folder_whose_job_has_not_finished_is_never_taken(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """Job B with --overwrite took the folder of job A while A was writing: A's report then replaced
    B's, over rows of two inputs."""
    client = connect(redis_url)
    out = tmp_path / "out"
    q = WorkQueue(client, prefix, "a")
    assert q.create([{"id": "u1"}, {"id": "u2"}], {"spec": {"output": str(out)}})
    claim_output(client, prefix, str(out), "a", resume=False, overwrite=False)
    write_part(pa.table({"id": ["x"]}), str(out), "u1", {"job_id": "a", "unit": "u1"})
    for take in (False, True):
        with pytest.raises(JobError, match=r"which has not finished \(0 of 2 units finished\); it is never taken"):
            claim_output(client, prefix, str(out), "b", resume=False, overwrite=True, take=take)
    assert holds(client, prefix, str(out), "a") and (out / "part-u1.parquet").exists()
    for _ in range(2):  # A finishes; only then may B take the folder, and A may no longer write there
        taken = q.take("c", block_ms=10)
        assert taken is not None
        q.ack(taken, {})
    claim_output(client, prefix, str(out), "b", resume=False, overwrite=True)
    assert holds(client, prefix, str(out), "b") and not holds(client, prefix, str(out), "a")


@pytest.mark.system
def test_overwrite_while_the_owner_runs_is_refused_and_the_owner_finishes(
    tmp_path: Path, redis_url: str, heads: str
) -> None:
    ids = write_logs(tmp_path / "a", files=1, rows_per_file=120, row_group=20, tenants=("acme",))
    write_logs(tmp_path / "b", files=1, rows_per_file=20, row_group=20, tenants=("acme",))
    out = tmp_path / "out"
    a_args = ["--input", str(tmp_path / "a"), "--output", str(out), "--unit-rows", "20", "--job-id", "runner"]
    a = classify(redis_url, heads, *a_args, env={"JOBS_TEST_SLOW_UNITS": "0.5:1"}, wait=False)
    q = WorkQueue(connect(redis_url), heads, "runner")
    deadline = time.time() + 120
    while time.time() < deadline and not (q.exists() and q.progress().done >= 1):
        time.sleep(0.1)
    b = classify(redis_url, heads, "--input", str(tmp_path / "b"), "--output", str(out), "--overwrite")
    assert b.returncode == 4 and "job runner, which has not finished" in one_error_line(b.stderr), b.stderr
    _, a_err = a.communicate(timeout=300)
    assert a.returncode == 0, a_err
    assert sorted(read_output_ids(out)) == sorted(ids)
    assert json.loads((out / "_report.json").read_text())["job_id"] == "runner"


# --- clear messages and exit codes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix_value", "why"),
    [
        ("", "invalid key prefix"),
        ("a b", "invalid key prefix"),
        ("*", "invalid key prefix"),
        ("x" * 300, "invalid key prefix"),
        ("fsj:job:demo", "job are key names of the store"),
    ],
)
def test_a_bad_redis_prefix_is_refused_first(redis_url: str, tmp_path: Path, prefix_value: str, why: str) -> None:
    started = time.time()
    r = jobs_cli(redis_url, prefix_value, "submit", "classify", "--input", LOGS, "--output", str(tmp_path / "o"))
    assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert time.time() - started < 10 and not (tmp_path / "o").exists()  # before Ray, before any output


def test_an_output_on_a_read_only_mount_is_refused_before_the_job_exists(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(out), str(out)], capture_output=True).returncode != 0:
        pytest.skip("needs a bind mount (root)")
    try:
        r = classify(redis_url, prefix, "--input", LOGS, "--output", str(out), "--job-id", "ro")
    finally:
        subprocess.run(["umount", str(out)], check=True)
    line = one_error_line(r.stderr)
    assert r.returncode == 5 and "read-only" in line and "--resume" not in line, r.stderr
    assert not WorkQueue(connect(redis_url), prefix, "ro").exists()


@contextlib.contextmanager
def full_disk(folder: Path) -> Iterator[Path]:
    """``folder`` as a 4 KiB tmpfs: one small file fills it."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("needs a tmpfs mount (root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_text_that_cannot_be_written_leaves_no_temporary_file(tmp_path: Path) -> None:
    with full_disk(tmp_path / "full") as out:
        (out / "_JOB").write_text("job")
        with pytest.raises(OSError, match="No space left"):
            write_text(str(out), "_report.json", "{}" * 4096, "job")
        assert [p.name for p in out.iterdir()] == ["_JOB"]


@pytest.mark.system
def test_a_full_disk_is_exit_4_with_no_temporary_file(tmp_path: Path, redis_url: str, heads: str) -> None:
    """A real full disk (a 4 KiB tmpfs, filled by the _JOB marker): the parts and then the report
    fail. It was exit 5, not the documented 4, with a 0-byte temporary _report.json left behind."""
    with full_disk(tmp_path / "full") as out:
        r = classify(redis_url, heads, "--input", LOGS, "--output", str(out), "--max-attempts", "1", "--job-id", "full")
        left = sorted(p.name for p in out.iterdir())
    line = one_error_line(r.stderr)
    assert r.returncode == 4 and "No space left on device" in line and "--resume full" in line, r.stderr
    assert left == ["_JOB"]


# --- nothing of the local Ray listens beyond loopback --------------------------------------------


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier and p not in found]
        found |= set(children)
        frontier = children
    return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp's address: 8 hex digits (IPv4) or 32 (IPv6), in 32-bit little-endian words."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def listening_addresses(pids: set[int]) -> set[tuple[str, str]]:
    """(address, command line) of every TCP socket in LISTEN state that one of ``pids`` holds."""
    inodes: dict[int, str] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inodes[int(link[8:-1])] = Path(f"/proc/{pid}/cmdline").read_text()[:100]
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                found.add((_address(local.split(":")[0]), inodes[inode]))
    return found


@pytest.mark.system
def test_the_local_ray_listens_on_loopback_only(tmp_path: Path, redis_url: str, heads: str) -> None:
    """Its dashboard's head process, the autoscaler monitor and the metrics exporter answered on
    0.0.0.0 with status 200 and no token."""
    write_logs(tmp_path / "in", files=1, rows_per_file=40, row_group=20, tenants=("acme",))
    args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--unit-rows", "20"]
    p = classify(redis_url, heads, *args, "--job-id", "loop", env={"JOBS_TEST_SLOW_UNITS": "3:1"}, wait=False)
    q = WorkQueue(connect(redis_url), heads, "loop")
    deadline = time.time() + 120
    while time.time() < deadline and not (q.exists() and q.progress().done >= 1):
        time.sleep(0.1)
    time.sleep(2)  # the agents and exporters have started by the time an actor has done a unit
    listening = listening_addresses(_descendants(p.pid))
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    assert len(listening) >= 5, listening  # GCS, raylet, agents, metrics exporters...
    beyond = {(a, command) for a, command in listening if not a.startswith("127.")}
    assert not beyond, beyond


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://:pa/ss@host:6379/0", "pa/ss"),  # a / in the password showed all of it
        ("cannot reach redis://user:p@ss@host/0 (refused)", "p@ss"),  # an @ in it showed its tail
        ("redis://:x:y@h:1/0", "x:y"),
        ("unix:///tmp/r.sock?password=abc&db=0", "abc"),
        ("s3://bucket/logs?endpoint_override=h:9&secret_key=SEC/RET&access_key=AKIA1", "SEC/RET"),
    ],
)
def test_no_part_of_a_secret_survives_redaction(text: str, secret: str) -> None:
    from workers.connection import redact

    shown = redact(text)
    assert "****" in shown and not any(part in shown for part in (secret, *secret.split("/"), *secret.split("@")))
