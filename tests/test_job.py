"""The classify job end to end on a real local Ray and a real Redis: exactly-once output under failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prune import Encoder
from prune.heads.head import centroid_head
from tests.conftest import REPO
from tests.jobdata import read_output_ids, write_logs
from workers.connection import connect
from workers.queue import WorkQueue
from workers.tenant_store import CentroidStore

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def tenants(redis_url: str, encoder: Encoder) -> str:
    """Tenants acme and beta (overlapping labels) in their own prefix."""
    prefix = "jobtest"
    store = CentroidStore(connect(redis_url), prefix)
    a = centroid_head(
        encoder.encode(["where is my card", "card not arrived", "exchange rate", "fx fees"]).embeddings,
        ["card", "card", "fx", "fx"],
    )
    b = centroid_head(encoder.encode(["top up failed", "pin blocked"]).embeddings, ["top_up", "card"])
    store.put("acme", a, encoder.fingerprint, None, {"card": 2, "fx": 2})
    store.put("beta", b, encoder.fingerprint, None, {"top_up": 1, "card": 1})
    return prefix


def submit(redis_url: str, prefix: str, *args: str, wait: bool = True, **kw: object):  # type: ignore[no-untyped-def]
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "submit",
        "classify",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
        "--id-column",
        "id",
        *args,
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def check_exactly_once(out: Path, ids: list[str]) -> None:
    got = read_output_ids(out)
    dup = [i for i, c in Counter(got).items() if c > 1]
    assert not dup, f"{len(dup)} duplicated rows, e.g. {dup[:3]}"
    assert sorted(got) == sorted(ids), f"{len(set(ids) - set(got))} rows lost"
    assert (out / "_SUCCESS").exists()


def wait_for_done_units(
    redis_url: str, prefix: str, job_id: str, n: int, timeout: float = 300, actors: int = 1
) -> None:
    """Until the job has ``n`` units done, by at least ``actors`` distinct actors."""
    q = WorkQueue(connect(redis_url), prefix, job_id)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if q.exists() and q.progress().done >= n and len({s["actor"] for s in q.done_stats().values()}) >= actors:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish {n} units by {actors} actors in {timeout}s")


def test_one_big_row_group_with_categorical_columns(tmp_path: Path, redis_url: str, tenants: str) -> None:
    """A file as pandas writes it (one row group, category dtypes) is cut into several units and
    classified like plain strings."""
    (tmp_path / "in").mkdir()
    n = 1200
    table = pa.table(
        {
            "id": [f"c{i:04d}" for i in range(n)],
            "tenant": pa.array([("acme", "beta")[i % 2] for i in range(n)]).dictionary_encode(),
            "text": pa.array([("where is my card", "top up failed", "")[i % 3] for i in range(n)]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "in" / "one.parquet", row_group_size=n)
    out = tmp_path / "out"
    r = submit(redis_url, tenants, "--input", str(tmp_path / "in"), "--output", str(out), "--unit-rows", "500")
    assert r.returncode == 0, r.stderr
    check_exactly_once(out, table.column("id").to_pylist())
    report = json.loads((out / "_report.json").read_text())
    assert report["units"]["total"] >= 3  # 400-row pieces of the one row group (and a finer tail)
    rows = pq.read_table(out).to_pylist()
    assert Counter(r["status"] for r in rows) == {"ok": 800, "empty_text": 400}
    assert {r["intent"] for r in rows if r["tenant"] == "acme" and r["text"] == "where is my card"} == {"card"}


def test_every_row_exactly_once_with_statuses_and_report(tmp_path: Path, redis_url: str, tenants: str) -> None:
    ids = write_logs(tmp_path / "in", files=3, rows_per_file=700, row_group=100)
    extra = pa.table(
        {
            "id": ["x1", "x2", "x3", "x4", "x5"],
            "tenant": ["acme", "acme", None, "a:b*", "beta"],
            "text": ["", None, "hello", "where is my card", "my card " * 12_500],
        }
    )
    pq.write_table(extra, tmp_path / "in" / "odd.parquet")
    pq.write_table(extra.slice(0, 0), tmp_path / "in" / "empty.parquet")
    out = tmp_path / "out"
    r = submit(
        redis_url,
        tenants,
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(out),
        "--unit-rows",
        "250",
        "--dtype",
        "float32",
    )
    assert r.returncode == 0, r.stderr
    check_exactly_once(out, [*ids, "x1", "x2", "x3", "x4", "x5"])
    table = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("part-*.parquet"))])
    assert table.column_names == [
        "id",
        "tenant",
        "text",
        "intent",
        "score",
        "margin",
        "status",
        "tokens",
        "tokens_kept",
    ]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["x1"]["status"] == rows["x2"]["status"] == "empty_text" and rows["x1"]["intent"] is None
    assert rows["x3"]["status"] == rows["x4"]["status"] == "unknown_tenant"
    assert rows["x5"]["status"] == "ok" and rows["x5"]["tokens"] == 256
    statuses = Counter(r["status"] for r in rows.values())
    assert statuses["unknown_tenant"] == 700 + 2  # tenant "nobody" is every third row
    assert {r["intent"] for r in rows.values() if r["tenant"] == "acme" and r["status"] == "ok"} <= {"card", "fx"}
    assert {r["intent"] for r in rows.values() if r["tenant"] == "beta" and r["status"] == "ok"} <= {"top_up", "card"}
    meta = json.loads(pq.read_schema(next(out.glob("part-*.parquet"))).metadata[b"fewshot_jobs"])
    assert {"job_id", "model_fingerprint", "prune", "tenant_versions"} <= set(meta)
    assert meta["dtype"] == "float32"  # an explicit --dtype is kept on any CPU
    report = json.loads((out / "_report.json").read_text())
    assert {p["dtype"] for p in report["placement"]} == {"float32"} and report["config"]["dtype"] == "float32"
    assert report["rows"] == {"planned": 2105, "written": 2105, "dead": 0}
    # 200+200+200+100 rows per file, then odd.parquet; the last unit per encode stream cut in 4
    streams = report["config"]["actors"] * report["config"]["cpus_per_actor"]
    # what decides int8: each actor's expected share covers the rows, and no actor is given more
    # than one row above an even share
    per_actor, actors = report["config"]["rows_per_actor"], report["config"]["actors"]
    assert per_actor * actors >= 2105 and per_actor <= 2105 / actors + 1
    assert report["units"]["total"] == report["units"]["done"] == 3 * 4 + 1 + 3 * min(streams, 13)
    assert report["empty_files"] and report["statuses"]["unknown_tenant"] == 702
    for key in ("rows_per_s", "wall_s", "time_split_s", "unit_latency_s", "actors", "nodes", "hardware", "versions"):
        assert key in report
    assert report["tokens_kept"] < report["tokens"]  # the tuned default prunes


def test_kill_one_of_two_actors(tmp_path: Path, redis_url: str, tenants: str) -> None:
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=3000, row_group=200)
    out = tmp_path / "out"
    job = "kill-actor"
    proc = submit(
        redis_url,
        tenants,
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(out),
        "--actors",
        "2",
        "--cpus-per-actor",
        "1",
        "--dtype",
        "float32",
        "--unit-rows",
        "200",
        "--claim-idle",
        "2",
        "--job-id",
        job,
        wait=False,
    )
    wait_for_done_units(redis_url, tenants, job, 2)
    pids = subprocess.run(["pgrep", "-f", "ray::ClassifierActor"], capture_output=True, text=True).stdout.split()
    assert len(pids) == 2, pids
    os.kill(int(pids[0]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert "an actor died" in stderr
    check_exactly_once(out, ids)


def test_kill_driver_then_resume(tmp_path: Path, redis_url: str, tenants: str) -> None:
    ids = write_logs(tmp_path / "in", files=2, rows_per_file=2500, row_group=250)
    out = tmp_path / "out"
    job = "kill-driver"
    proc = submit(
        redis_url,
        tenants,
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(out),
        "--dtype",
        "float32",
        "--unit-rows",
        "250",
        "--claim-idle",
        "2",
        "--job-id",
        job,
        wait=False,
    )
    wait_for_done_units(redis_url, tenants, job, 3)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray
    proc.wait()
    q = WorkQueue(connect(redis_url), tenants, job)
    before = q.done_stats()
    assert 3 <= len(before) < 20 and not (out / "_SUCCESS").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    r = submit(redis_url, tenants, "--resume", job, "--input", "elsewhere", "--output", "elsewhere")
    assert r.returncode == 2 and "--resume continues the job as it was submitted" in r.stderr, r.stderr
    r = submit(redis_url, tenants, "--resume", job)
    assert r.returncode == 0, r.stderr
    check_exactly_once(out, ids)
    after = q.done_stats()
    for unit, stats in before.items():  # finished units were not recomputed
        assert after[unit]["finished"] == stats["finished"]
        assert (out / f"part-{unit}.parquet").stat().st_mtime_ns == mtimes[f"part-{unit}.parquet"]


def test_three_node_cluster_remove_a_node(tmp_path: Path, redis_url: str, tenants: str) -> None:
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from jobs.run import run_job
    from workers.job_spec import Columns, JobSpec

    ids = write_logs(tmp_path / "in", files=3, rows_per_file=1400, row_group=200)
    out = tmp_path / "out"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        spec = JobSpec(
            input=str(tmp_path / "in"),
            output=str(out),
            columns=Columns("text", "tenant", "id"),
            dtype="float32",
            actors=3,
            cpus_per_actor=1,
            unit_rows=200,
            claim_idle_ms=2000,
        )
        result: dict[str, object] = {}
        t = threading.Thread(
            target=lambda: result.update(
                report=run_job(
                    spec,
                    redis_url=redis_url,
                    prefix=tenants,
                    ray_address=cluster.address,
                    job_id="three-nodes",
                    log=lambda m: result.setdefault("log", m),
                )
            )
        )
        t.start()
        wait_for_done_units(redis_url, tenants, "three-nodes", 3, actors=3)  # every actor up and working
        cluster.remove_node(workers[0])
        t.join(900)
        report = result["report"].to_dict()  # type: ignore[attr-defined]
        check_exactly_once(out, ids)
        nodes = {a["node"] for a in report["actors"].values()}
        assert len(nodes) == 3  # one actor per node, each did work before the removal
        assert len({p["node"] for p in report["placement"]}) == 3
    finally:
        ray.shutdown()
        cluster.shutdown()
