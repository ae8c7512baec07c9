"""Bad job input: clear errors before anything starts, per-row statuses, or a dead-lettered unit with its cause."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.plan import Columns, PlanError, plan
from tests.conftest import REPO
from tests.jobdata import write_logs
from workers.connection import connect
from workers.queue import WorkQueue


def good(folder: Path) -> Path:
    write_logs(folder, files=2, rows_per_file=50, row_group=20)
    return folder


def submit(redis_url: str, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", "submit", "classify", "--redis-url", redis_url, "--redis-prefix", prefix, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "RAY_ADDRESS": ""},
        timeout=600,
    )


def test_plan_cuts_units_on_row_groups_deterministically(tmp_path: Path) -> None:
    folder = good(tmp_path / "in")
    a = plan(str(folder), Columns(), unit_rows=45)
    b = plan(str(folder), Columns(), unit_rows=45)
    assert [u.id for u in a.units] == [u.id for u in b.units]
    assert [u.rows for u in a.units] == [40, 10] * 2  # groups of 20, 20, 10 per file
    assert a.rows == 100 and len({u.id for u in a.units}) == 4


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing text column", "no column 'text'"),
        ("wrong column type", "column 'text' is int64, expected string"),
        ("corrupt file among good ones", "not a readable Parquet file"),
        ("zero-byte file", "not a readable Parquet file"),
        ("non-parquet files", "not .parquet: "),
        ("output column clash", "clash with the output columns"),
        ("id type differs across files", "column 'id' has types that do not combine across files (string in"),
        ("missing input", "does not exist"),
    ],
)
def test_bad_input_fails_before_start(case: str, message: str, tmp_path: Path, redis_url: str, prefix: str) -> None:
    folder = good(tmp_path / "in")
    if case == "missing text column":
        pq.write_table(pa.table({"id": ["a"], "tenant": ["acme"], "utterance": ["hi"]}), folder / "x.parquet")
    elif case == "wrong column type":
        pq.write_table(pa.table({"id": ["a"], "tenant": ["acme"], "text": [3]}), folder / "x.parquet")
    elif case == "corrupt file among good ones":
        (folder / "x.parquet").write_bytes(b"PAR1 this is not parquet at all" * 10)
    elif case == "zero-byte file":
        (folder / "x.parquet").write_bytes(b"")
    elif case == "non-parquet files":
        (folder / "notes.csv").write_text("a,b\n")
    elif case == "id type differs across files":  # would label every row, then fail `jobs query`
        pq.write_table(pa.table({"id": [7], "tenant": ["acme"], "text": ["hi"]}), folder / "x.parquet")
    elif case == "output column clash":
        pq.write_table(
            pa.table({"id": ["a"], "tenant": ["acme"], "text": ["hi"], "intent": ["x"]}), folder / "x.parquet"
        )
    else:
        folder = tmp_path / "nowhere"
    out = tmp_path / "out"
    r = submit(redis_url, prefix, "--input", str(folder), "--output", str(out), "--job-id", "bad")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not WorkQueue(connect(redis_url), prefix, "bad").exists()  # nothing was started
    assert not out.exists()  # planning failed before the output folder was claimed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nowhere/model"], "model directory '/nowhere/model' does not exist"),
        (["--model", "BROKEN"], "cannot read config.json"),
        (["--prune", "s=4,q=0.5,l=6"], "prune layer l=6 is out of range for a 6-layer model"),
    ],
)
def test_bad_model_fails_before_any_actor(
    args: list[str], message: str, tmp_path: Path, redis_url: str, prefix: str
) -> None:
    """Checked in the driver (without torch): no actor starts, nothing is enqueued or written."""
    from prune.models.files import default_model_dir

    if "BROKEN" in args:
        broken = tmp_path / "model"
        shutil.copytree(default_model_dir(), broken)
        (broken / "config.json").write_text("{not json")
        args = ["--model", str(broken)]
    out = tmp_path / "out"
    r = submit(redis_url, prefix, "--input", str(good(tmp_path / "in")), "--output", str(out), "--job-id", "bad", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and "actor" not in r.stderr
    assert not out.exists() and not WorkQueue(connect(redis_url), prefix, "bad").exists()


def test_hidden_and_underscore_files_are_ignored(tmp_path: Path) -> None:
    folder = good(tmp_path / "in")
    (folder / "_SUCCESS").write_text("")
    (folder / ".crc").write_text("x")
    assert len(plan(str(folder), Columns()).files) == 2


def test_tenant_column_xor_fixed_tenant() -> None:
    with pytest.raises(ValueError):
        Columns(tenant=None, fixed_tenant=None)
    with pytest.raises(PlanError, match="no column 'tenant_x'"):
        plan(str(REPO / "examples" / "logs"), Columns(tenant="tenant_x"))


@pytest.mark.system
def test_failing_unit_is_dead_lettered_and_reported(tmp_path: Path, redis_url: str, prefix: str, encoder) -> None:
    """A tenant whose stored head is corrupt makes its units fail: retried, dead-lettered, reported, exit 4."""
    folder = tmp_path / "in"
    write_logs(folder, files=1, rows_per_file=40, row_group=20, tenants=("acme",))
    pq.write_table(
        pa.table({"id": ["g1", "g2"], "tenant": ["good", "good"], "text": ["hi", "card"]}), folder / "z-good.parquet"
    )
    from prune.heads.head import centroid_head
    from workers.tenant_store import CentroidStore

    client = connect(redis_url)
    store = CentroidStore(client, prefix)
    head = centroid_head(encoder.encode(["a", "b"]).embeddings, ["x", "y"])
    store.put("good", head, encoder.fingerprint, None, {"x": 1, "y": 1})
    store.put("acme", head, encoder.fingerprint, None, {"x": 1, "y": 1})
    client.hset(store.key("acme"), "weight", b"\x00" * 12)  # corrupt: wrong size
    client.hset(store.key("acme"), "version", 999)
    out = tmp_path / "out"
    r = submit(
        redis_url,
        prefix,
        "--input",
        str(folder),
        "--output",
        str(out),
        "--max-attempts",
        "2",
        "--unit-rows",
        "20",
        "--actors",
        "1",
        "--cpus-per-actor",
        "1",
        "--job-id",
        "dead",
    )
    assert r.returncode == 4, r.stderr
    assert "dead-lettered" in r.stderr and "CorruptTenant" in r.stderr
    report = json.loads((out / "_report.json").read_text())
    # units of 20 + 20 + 2 rows; the last (one per encode stream: 1 actor x 1 CPU) cut in pieces
    assert report["units"] == {"total": 4, "done": 2, "dead": 2}
    assert report["rows"] == {"planned": 42, "written": 2, "dead": 40}
    assert all("CorruptTenant" in d["error"] for d in report["dead_units"])
    assert not (out / "_SUCCESS").exists()
    assert len(list(out.glob("part-*.parquet"))) == 2


def test_output_of_another_job_is_refused(tmp_path: Path, redis_url: str, prefix: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_JOB").write_text("someone-else")
    r = submit(redis_url, prefix, "--input", str(REPO / "examples" / "logs"), "--output", str(out))
    assert r.returncode == 4 and "belongs to job someone-else" in r.stderr
    r = submit(redis_url, prefix, "--resume", "never-was", "--input", "x", "--output", "y")
    assert r.returncode == 4 and "nothing to resume" in r.stderr


def test_column_types_that_become_one_type_in_the_parts_are_accepted(tmp_path: Path) -> None:
    folder = good(tmp_path / "in")
    ids = pa.array(["a", "b"]).dictionary_encode()  # pandas' category dtype; the parts hold it as string
    pq.write_table(
        pa.table({"id": ids, "tenant": ["acme"] * 2, "text": pa.array(["hi", "yo"], pa.large_string())}),
        folder / "x.parquet",
    )
    assert plan(str(folder), Columns()).rows == 102


@pytest.mark.system  # a CLI job that starts its local Ray (7 s)
def test_input_without_rows_leaves_an_empty_part_that_reads_as_the_output(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    # a day without utterances: the job succeeds with 0 rows, and readers of the output (jobs query,
    # DuckDB or Spark over part-*.parquet) get the job's columns instead of "no part files"
    folder = tmp_path / "in"
    folder.mkdir()
    empty = pa.table(
        {"id": pa.array([], pa.int64()), "tenant": pa.array([], pa.string()), "text": pa.array([], pa.large_string())}
    )
    for name in ("a", "b"):
        channel = pa.array([], pa.dictionary(pa.int32(), pa.string()))
        pq.write_table(empty.append_column("channel", channel), folder / f"{name}.parquet")
    out = tmp_path / "out"
    r = submit(redis_url, prefix, "--input", str(folder), "--output", str(out), "--job-id", "nothing")
    assert r.returncode == 0, r.stderr
    assert (out / "_SUCCESS").exists() and json.loads((out / "_report.json").read_text())["rows"]["written"] == 0
    [part] = out.glob("part-*.parquet")
    schema = pq.read_schema(part)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("id", "int64"),
        ("tenant", "string"),
        ("text", "string"),
        ("channel", "string"),
        ("intent", "string"),
        ("score", "float"),
        ("margin", "float"),
        ("status", "string"),
        ("tokens", "int32"),
        ("tokens_kept", "int32"),
    ]
    assert pq.read_metadata(part).num_rows == 0
    q = subprocess.run(
        [sys.executable, "-m", "jobs", "query", str(out), "--count-by", "status"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert q.returncode == 0 and q.stdout.strip() == '"status","rows"', q.stderr
