"""Red-team cases: races, bad paths, broken infrastructure and odd rows. Each test reproduces a
way the job used to look successful while it lost, doubled or mislabelled rows, or to end in a
traceback, and checks what it does now: every row exactly once, or a documented exit code whose
message names the cause and how to resume."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prune import Encoder
from prune.heads.head import centroid_head
from tests.conftest import REPO, free_port, start_redis
from tests.fakes import FakeEncoder
from tests.jobdata import read_output_ids, write_logs
from workers.connection import connect
from workers.parquet_io import write_part
from workers.queue import WorkQueue
from workers.tenant_store import CentroidStore

SLOW = "JOBS_TEST_SLOW_UNITS"
NO_SPACE = "JOBS_TEST_NO_SPACE_UNITS"


def jobs_cli(redis_url: str, prefix: str, *args: str, env: dict[str, str] | None = None, cwd: Path = REPO, wait=True):  # type: ignore[no-untyped-def]
    cmd = [sys.executable, "-m", "jobs", *args, "--redis-url", redis_url, "--redis-prefix", prefix]
    full_env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO), **(env or {})}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)
    return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def classify(redis_url: str, prefix: str, *args: str, **kw):  # type: ignore[no-untyped-def]
    return jobs_cli(redis_url, prefix, "submit", "classify", "--id-column", "id", *args, **kw)


def one_error_line(stderr: str) -> str:
    """The error line, checked to be the message's only line (no traceback after it)."""
    lines = stderr.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == len(lines) - 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[-1]


def part_rows(out: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in out.glob("part-*.parquet"))


def assert_exactly_once_or_failed_honestly(r: subprocess.CompletedProcess[str], out: Path, ids: list[str]) -> None:
    """Exit 0 with every id once and _SUCCESS; or exit 4 naming the dead units, without _SUCCESS,
    with no id twice and the report's written rows equal to the rows in the part files."""
    got = read_output_ids(out)
    assert not [i for i, c in Counter(got).items() if c > 1], "a row was written twice"
    report = json.loads((out / "_report.json").read_text())
    assert report["rows"]["written"] == len(got) == part_rows(out)
    assert not list(out.glob("_tmp-*")), "temporary files left behind"
    if r.returncode == 0:
        assert sorted(got) == sorted(ids), f"exit 0 but {len(set(ids) - set(got))} rows missing"
        assert (out / "_SUCCESS").exists()
    else:
        assert r.returncode == 4, r.stderr
        assert "dead-lettered" in r.stderr and not (out / "_SUCCESS").exists()
        assert report["rows"]["written"] + report["rows"]["dead"] == report["rows"]["planned"] == len(ids)


# --- 1. exactly once by unit identity -------------------------------------------------------


@pytest.mark.system
def test_takeover_race_stress_every_row_once_or_a_named_failure(tmp_path: Path, redis_url: str, heads: str) -> None:
    """Many small units, a claim-idle shorter than the slow units, two streams, max one attempt,
    twice, the second time with an actor killed: a slow stream's unit is taken over and
    dead-lettered while it still works on it. The job used to end early and write _SUCCESS
    without those rows."""
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=200, row_group=20, tenants=("acme",))
    args = ["--input", str(tmp_path / "in"), "--unit-rows", "20", "--max-attempts", "1", "--claim-idle", "0.3"]
    args += ["--actors", "1", "--cpus-per-actor", "2", "--dtype", "float32", "--prune", "none"]
    for run in range(2):
        out = tmp_path / f"out{run}"
        job = f"stress{run}"
        p = classify(redis_url, heads, *args, "--output", str(out), "--job-id", job, env={SLOW: "1.0:3"}, wait=False)
        if run == 1:  # SIGKILL the actor once it has done some work: a new one takes over
            q = WorkQueue(connect(redis_url), heads, job)
            deadline = time.time() + 120
            while time.time() < deadline and not (q.exists() and q.progress().done >= 3):
                time.sleep(0.1)
            os.kill(next(iter(q.done_stats().values()))["pid"], signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=300)
        assert_exactly_once_or_failed_honestly(
            subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), out, ids
        )


def test_a_late_ack_wins_over_dead_lettering_and_done_is_never_dead(redis_url: str, prefix: str) -> None:
    q = WorkQueue(connect(redis_url), prefix, "late", max_attempts=1, claim_idle_ms=100)
    q.create([{"id": "a"}, {"id": "b"}], {})
    slow = q.take("slow", block_ms=50)
    assert slow is not None and slow.unit["id"] == "a"
    time.sleep(0.2)
    fresh = q.take("idle", block_ms=50)  # reclaims a past its one attempt (dead-lettered), then takes b
    assert fresh is not None and fresh.unit["id"] == "b"
    assert q.progress().dead == 1 and not q.progress().finished  # b is still open: the job goes on
    q.ack(slow, {"by": "slow"})  # the slow owner's part file is complete: the unit is done after all
    assert (q.progress().done, q.progress().dead, q.dead_letters()) == (1, 0, [])
    q.ack(fresh, {"by": "idle"})
    assert q.progress().finished and set(q.done_stats()) == {"a", "b"}


# --- 2. paths ------------------------------------------------------------------------------


def test_symlink_loops_and_duplicate_links_are_read_once(tmp_path: Path) -> None:
    from jobs.plan import Columns, plan

    write_logs(tmp_path / "in" / "day", files=2, rows_per_file=10, row_group=10)
    (tmp_path / "in" / "day" / "loop").symlink_to(tmp_path / "in")  # a subfolder links back to its parent
    (tmp_path / "in" / "again.parquet").symlink_to(tmp_path / "in" / "day" / "logs-00.parquet")
    p = plan(str(tmp_path / "in"), Columns())
    assert len(p.files) == 2 and p.rows == 20


def test_paths_are_stored_absolute_and_output_may_not_overlap_input(tmp_path: Path, monkeypatch) -> None:
    from jobs.plan import check_apart
    from prune.errors import BadInput
    from workers.job_spec import JobSpec

    monkeypatch.chdir(tmp_path)
    spec = JobSpec(input="logs", output="out/labelled")
    assert spec.input == str(tmp_path / "logs") and spec.output == str(tmp_path / "out" / "labelled")
    assert JobSpec.from_dict(spec.to_dict()) == spec
    for inp, out in (("logs", "logs"), ("logs", "logs/labelled"), ("data/logs", "data")):
        s = JobSpec(input=inp, output=out)
        with pytest.raises(BadInput, match="overlaps input"):
            check_apart(s.input, s.output)


@pytest.mark.system
def test_sigterm_then_resume_from_another_directory(tmp_path: Path, redis_url: str, heads: str) -> None:
    """Relative paths typed in one folder, SIGTERM (exit 130 with a resume hint), then --resume
    from another folder: the rest lands in the first output, every row once."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    ids = write_logs(work / "in", files=1, rows_per_file=240, row_group=20, tenants=("acme",))
    args = ["--input", "in", "--output", "out", "--unit-rows", "20", "--actors", "1", "--cpus-per-actor", "1"]
    # the unit in flight at the signal is taken over by the resume once idle: 5 s, not the default 60
    args += ["--claim-idle", "5"]
    p = classify(redis_url, heads, *args, "--job-id", "term", cwd=work, env={SLOW: "0.5:1"}, wait=False)
    q = WorkQueue(connect(redis_url), heads, "term")
    deadline = time.time() + 120
    while time.time() < deadline and not (q.exists() and q.progress().done >= 2):
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume term" in stderr and "Traceback" not in stderr, stderr
    r = classify(redis_url, heads, "--resume", "term", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert not (elsewhere / "out").exists()
    assert sorted(read_output_ids(work / "out")) == sorted(ids) and (work / "out" / "_SUCCESS").exists()


# --- 3. output ownership ---------------------------------------------------------------------


@pytest.mark.system
def test_two_jobs_started_at_once_into_one_output(tmp_path: Path, redis_url: str, heads: str) -> None:
    ids = write_logs(tmp_path / "in", files=1, rows_per_file=100, row_group=50, tenants=("acme",))
    args = [
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(tmp_path / "out"),
        "--actors",
        "1",
        "--cpus-per-actor",
        "1",
    ]
    both = [classify(redis_url, heads, *args, wait=False) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in both]
    assert sorted(code for code, _ in results) == [0, 4], results
    loser = next(err for code, err in results if code == 4)
    assert "claimed meanwhile" in loser or "belongs to" in loser or "finished job" in loser, loser
    assert sorted(read_output_ids(tmp_path / "out")) == sorted(ids)


@pytest.mark.system
def test_files_of_another_job_are_refused_unless_overwrite(tmp_path: Path, redis_url: str, heads: str) -> None:
    ids = write_logs(tmp_path / "in", files=1, rows_per_file=30, row_group=30, tenants=("acme",))
    out = tmp_path / "out"
    out.mkdir()
    # an old run's part: its footer names its job (a job of another Redis, or one forgotten)
    write_part(pa.table({"id": ["old"]}), str(out), "0123456789abcdef0123", {"job_id": "old-run"})
    args = ["--input", str(tmp_path / "in"), "--output", str(out)]
    r = classify(redis_url, heads, *args)
    assert r.returncode == 4 and "--overwrite" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = classify(redis_url, heads, *args, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert sorted(read_output_ids(out)) == sorted(ids)  # the old part is gone: query and report agree
    (out / "notes.txt").write_text("mine")
    r = classify(redis_url, heads, *args, "--overwrite")
    assert r.returncode == 4 and "notes.txt" in r.stderr  # never deletes what no job wrote


# --- 4. infrastructure failures ----------------------------------------------------------------


def test_output_that_is_a_file_or_under_a_file(tmp_path: Path, redis_url: str, heads: str) -> None:
    (tmp_path / "file").write_text("x")
    logs = str(REPO / "examples" / "logs")
    r = classify(redis_url, heads, "--input", logs, "--output", str(tmp_path / "file"))
    assert r.returncode == 2 and "is a file; expected a folder" in r.stderr and "Traceback" not in r.stderr
    r = classify(redis_url, heads, "--input", logs, "--output", str(tmp_path / "file" / "out"))
    assert r.returncode == 5 and "output folder" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_unreachable_input_uri_is_a_storage_error(redis_url: str, heads: str, tmp_path: Path) -> None:
    uri = "s3://bucket/logs?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"  # nothing listens there
    r = classify(redis_url, heads, "--input", uri, "--output", str(tmp_path / "out"))
    assert r.returncode == 5 and "Could not connect" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch) -> None:
    from workers import parquet_io

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(parquet_io.pq, "write_table", full)
    with pytest.raises(OSError, match="No space"):
        parquet_io.write_part(pa.table({"a": [1]}), str(tmp_path), "u1", {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.system
def test_units_dead_of_a_full_disk_are_retried_by_resume(tmp_path: Path, redis_url: str, heads: str) -> None:
    ids = write_logs(tmp_path / "in", files=1, rows_per_file=120, row_group=20, tenants=("acme",))
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), "--unit-rows", "20", "--max-attempts", "2"]
    r = classify(redis_url, heads, *args, "--job-id", "disk", env={NO_SPACE: "2"})
    assert r.returncode == 4 and "No space left" in r.stderr and "--resume disk" in r.stderr, r.stderr
    assert not list(out.glob("_tmp-*"))
    r = classify(redis_url, heads, "--resume", "disk")  # the disk has room again
    assert r.returncode == 0, r.stderr
    assert sorted(read_output_ids(out)) == sorted(ids) and (out / "_SUCCESS").exists()


@pytest.mark.system
def test_redis_lost_mid_job_is_exit_3_with_a_resume_hint(tmp_path: Path, heads: str, encoder: Encoder) -> None:
    server, url = start_redis(tmp_path)
    try:
        store = CentroidStore(connect(url), "lost")
        store.put(
            "acme",
            centroid_head(encoder.encode(["card", "fx"]).embeddings, ["card", "fx"]),
            encoder.fingerprint,
            None,
            {"card": 1, "fx": 1},
        )
        write_logs(tmp_path / "in", files=1, rows_per_file=200, row_group=20, tenants=("acme",))
        args = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--unit-rows", "20"]
        p = classify(url, "lost", *args, "--job-id", "lost", env={SLOW: "1:1"}, wait=False)
        q = WorkQueue(connect(url), "lost", "lost")
        deadline = time.time() + 120
        while time.time() < deadline and not (q.exists() and q.progress().done >= 1):
            time.sleep(0.1)
        server.kill()
        _, stderr = p.communicate(timeout=180)
        line = one_error_line(stderr)  # was the actor's 89-line remote traceback
        assert p.returncode == 3 and "--resume lost" in line and len(line) < 400, stderr
    finally:
        server.kill()
        server.wait()


def test_examples_with_a_duplicate_header_are_bad_input(tmp_path: Path, redis_url: str, prefix: str) -> None:
    f = tmp_path / "ex.csv"
    f.write_text("text,label,label\nwhere is my card,card,x\n")
    r = jobs_cli(redis_url, prefix, "tenants", "add", "acme", "--examples", str(f))
    assert r.returncode == 2 and "label" in r.stderr and "Traceback" not in r.stderr, r.stderr


# --- 5. rows ------------------------------------------------------------------------------------


def _table_with_odd_rows(dictionary: bool) -> pa.Table:
    texts = pa.array([b"where is my card", b"fx fees \xff", "\u200b".encode(), b"exchange rate"], pa.binary())
    text = texts.view(pa.string())  # the second row's bytes are not UTF-8, as other writers leave them
    tenant = pa.array(["acme"] * 4)
    if dictionary:
        tenant = tenant.dictionary_encode()
    return pa.table({"id": ["a", "b", "c", "d"], "tenant": tenant, "text": text})


def test_an_undecodable_or_tokenless_row_gets_a_status_and_its_unit_goes_on(redis_url: str, prefix: str) -> None:
    from workers.classify import HeadCache, classify_table
    from workers.job_spec import Columns

    enc = FakeEncoder()
    store = CentroidStore(connect(redis_url), prefix)
    store.put("acme", centroid_head(enc.encode(["card", "fx"]).embeddings, ["card", "fx"]), enc.fingerprint, None, {})
    result = classify_table(
        _table_with_odd_rows(False), enc, HeadCache(store, enc.fingerprint), Columns("text", "tenant", "id")
    )
    rows = result.table.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "invalid_text", "no_tokens", "ok"]
    assert rows[1]["text"] == "fx fees \ufffd" and rows[1]["intent"] is None and rows[2]["intent"] is None


def test_output_schema_does_not_depend_on_input_encoding(redis_url: str, prefix: str) -> None:
    from workers.classify import HeadCache, classify_table
    from workers.job_spec import Columns

    enc = FakeEncoder()
    store = CentroidStore(connect(redis_url), prefix)
    store.put("acme", centroid_head(enc.encode(["card", "fx"]).embeddings, ["card", "fx"]), enc.fingerprint, None, {})
    cache = HeadCache(store, enc.fingerprint)
    plain = classify_table(_table_with_odd_rows(False), enc, cache, Columns("text", "tenant", "id")).table
    categorical = classify_table(_table_with_odd_rows(True), enc, cache, Columns("text", "tenant", "id")).table
    assert plain.schema == categorical.schema


def test_a_job_labels_with_the_heads_pinned_at_submit(redis_url: str, prefix: str) -> None:
    from workers.classify import HeadCache

    enc = FakeEncoder()
    store = CentroidStore(connect(redis_url), prefix)
    first = store.put(
        "acme", centroid_head(enc.encode(["card", "fx"]).embeddings, ["card", "fx"]), enc.fingerprint, None, {}
    )
    assert store.pin("job1") == {"acme": first}
    cache = HeadCache(store.pinned("job1"), enc.fingerprint)
    store.put("acme", centroid_head(enc.encode(["a", "b", "c"]).embeddings, ["x", "y", "z"]), enc.fingerprint, None, {})
    assert cache.lookup({"acme"})["acme"].head.labels == ("card", "fx")  # type: ignore[union-attr]
    store.remove("acme")
    assert cache.lookup({"acme", "later"}) == {"acme": cache.lookup({"acme"})["acme"], "later": "unknown_tenant"}


def test_an_unknown_tenant_for_every_row_fails_before_the_job(redis_url: str, heads: str, tmp_path: Path) -> None:
    logs = str(REPO / "examples" / "logs")
    r = classify(redis_url, heads, "--input", logs, "--output", str(tmp_path / "out"), "--tenant", "acmee")
    assert r.returncode == 2 and "unknown tenant 'acmee'" in r.stderr and not (tmp_path / "out").exists()


@pytest.mark.system
def test_mixed_encodings_odd_rows_and_a_single_intent_tenant_end_to_end(
    tmp_path: Path, redis_url: str, heads: str
) -> None:
    """Dictionary and plain text in two files, an undecodable row, a tokenless row, a tenant with
    one intent (no runner-up): the job succeeds, `jobs query` reads it, JSON has no Infinity."""
    (tmp_path / "in").mkdir()
    pq.write_table(_table_with_odd_rows(True), tmp_path / "in" / "a.parquet")
    plain = pa.table({"id": ["e", "f"], "tenant": ["solo", "acme"], "text": ["top up please", "fx fees"]})
    pq.write_table(plain, tmp_path / "in" / "b.parquet")
    out = tmp_path / "out"
    r = classify(redis_url, heads, "--input", str(tmp_path / "in"), "--output", str(out))
    assert r.returncode == 0, r.stderr
    q = subprocess.run(
        [sys.executable, "-m", "jobs", "query", str(out), "--format", "json", "--columns", "id,status,margin"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert q.returncode == 0, q.stderr
    rows = {(row := json.loads(line))["id"]: row for line in q.stdout.splitlines()}
    assert {k: v["status"] for k, v in rows.items()} == {
        "a": "ok",
        "b": "invalid_text",
        "c": "no_tokens",
        "d": "ok",
        "e": "ok",
        "f": "ok",
    }
    assert rows["e"]["margin"] is None and "Infinity" not in q.stdout and "NaN" not in q.stdout


# --- 6. Ray, 7. cluster.yaml ----------------------------------------------------------------------


@pytest.mark.system
def test_the_local_default_works_beside_another_ray(tmp_path: Path, redis_url: str, heads: str) -> None:
    from ray._common.utils import get_ray_address_file

    address_file = Path(get_ray_address_file(None))  # `ray start` leaves its address here for ray.init
    before = address_file.read_text() if address_file.exists() else None
    ray_bin = str(Path(sys.executable).with_name("ray"))
    other = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "1",
            "--include-dashboard",
            "false",
            "--port",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(8)
        assert other.poll() is None, "the other Ray did not start"
        r = classify(redis_url, heads, "--input", str(REPO / "examples" / "logs"), "--output", str(tmp_path / "out"))
        assert r.returncode == 0, r.stderr
        assert len(read_output_ids(tmp_path / "out")) == 355
    finally:
        os.killpg(other.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            other.wait(5)
        except subprocess.TimeoutExpired:  # its graceful stop takes half a minute: the rest is killed
            os.killpg(other.pid, signal.SIGKILL)
            other.wait(30)
        if before is None:  # and the address file it wrote goes too: a stale one broke the old default as well
            address_file.unlink(missing_ok=True)
        else:
            address_file.write_text(before)


def test_a_failed_redis_start_fails_the_cluster_setup(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    [command] = [c for c in config["head_start_ray_commands"] if "redis serve" in c]
    (tmp_path / ".jobs-redis-password").write_text("pw")
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # `python` is the project's, as on the head node
    env = {**os.environ, "HOME": str(tmp_path), "JOBS_REDIS_SERVER": "/bin/false", "PATH": path}
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert r.returncode != 0 and "did not come up" in r.stderr, (r.returncode, r.stderr)


def test_the_json_report_never_holds_infinity(tmp_path: Path) -> None:
    from jobs.query_output import write_json_lines

    reader = pa.RecordBatchReader.from_batches(
        pa.schema([("m", pa.float32())]),
        [pa.record_batch([pa.array(np.array([np.inf, np.nan, 1.0], np.float32))], ["m"])],
    )
    with (tmp_path / "o.jsonl").open("w") as f:
        write_json_lines(reader, f)
    assert (tmp_path / "o.jsonl").read_text().split() == ['{"m":', "null}", '{"m":', "null}", '{"m":', "1.0}"]


@pytest.mark.system  # CLI processes that start a Redis server (9 s)
def test_redis_serve_starts_a_password_server_once(tmp_path: Path) -> None:
    import redis

    port = free_port()
    (tmp_path / "pw").write_text("s3cret\n")
    cmd = [sys.executable, "-m", "jobs", "redis", "serve", "--port", str(port), "--password-file", str(tmp_path / "pw")]
    cmd += ["--dir", str(tmp_path / "data")]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
    client = redis.Redis(port=port, password="s3cret")
    try:
        assert first.returncode == 0 and client.ping(), first.stderr
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).get("x")  # the password is required
        pid = client.info()["process_id"]
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60)
        assert again.returncode == 0 and client.info()["process_id"] == pid  # reused, not a second server
    finally:
        client.shutdown(nosave=True)
