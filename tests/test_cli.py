"""The jobs CLI as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prune.config import resolve_dtype

pytestmark = pytest.mark.system  # CLI processes that load the real model

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def test_demo_runs_the_job_on_the_bundled_logs(tmp_path: Path, banking_test: list[dict[str, str]]) -> None:
    import tempfile

    import pyarrow.parquet as pq

    home = tempfile.mkdtemp(prefix="jh", dir="/tmp")
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("JOBS_REDIS_URL", "RAY_ADDRESS")}
    r = subprocess.run(
        [sys.executable, "-m", "jobs", "demo", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env={**env, "JOBS_HOME": home},
    )
    subprocess.run([sys.executable, "-m", "jobs", "redis", "stop"], cwd=REPO, env={**env, "JOBS_HOME": home})
    assert r.returncode == 0, r.stderr
    assert "355 rows" in r.stdout and "'empty_text': 5" in r.stdout and "'unknown_tenant': 10" in r.stdout
    assert (out / "_SUCCESS").exists()
    ran_as = resolve_dtype("auto")  # the default: bf16 only where this CPU has it natively
    assert f"{ran_as})" in r.stdout
    part = next(out.glob("part-*.parquet"))
    assert json.loads(pq.read_schema(part).metadata[b"fewshot_jobs"])["dtype"] == ran_as
    truth = {x["text"]: x["label"] for x in banking_test}
    intents = {
        line.rsplit(",", 1)[1] for line in (REPO / "examples" / "acme_examples.csv").read_text().splitlines()[1:]
    }
    rows = [row for p in out.glob("part-*.parquet") for row in pq.read_table(p).to_pylist()]
    scored = [row for row in rows if row["tenant"] == "acme" and truth.get(row["text"]) in intents]
    assert len(scored) == 320
    accuracy = sum(row["intent"] == truth[row["text"]] for row in scored) / len(scored)
    assert accuracy >= 0.8


def test_encode_jsonl() -> None:
    r = run("encode", stdin="hello world\n\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["tokens"] for row in rows] == [4, 2]
    assert len(rows[0]["embedding"]) == 384


def test_encode_refuses_lines_that_are_not_utf8_and_reads_crlf_and_a_bom(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "jobs", "encode"], input=b"hello\n\xff\xfe bad\n\nlast", capture_output=True, cwd=REPO
    )
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr and bad.stdout == b""
    assert b"1 line(s) are not UTF-8: line 2 (byte 0xff at byte 1)" in bad.stderr
    (tmp_path / "windows.txt").write_bytes(b"\xef\xbb\xbfhello world\r\n\r\nlast")
    good = run("encode", "--input", str(tmp_path / "windows.txt"))
    assert good.returncode == 0, good.stderr
    assert [json.loads(line)["tokens"] for line in good.stdout.splitlines()] == [4, 2, 3]


def test_bad_prune_config_exit_2() -> None:
    r = run("encode", "--prune", "s=1,q=0.5,l=1", stdin="x\n")
    assert r.returncode == 2
    assert "min_tokens" in r.stderr and "--prune" in r.stderr


def test_missing_model_dir_exit_2(tmp_path: Path) -> None:
    r = run("encode", "--model", str(tmp_path / "absent"), stdin="x\n")
    assert r.returncode == 2
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_prune_layer_out_of_range_exit_2() -> None:
    r = run("encode", "--prune", "s=4,q=0.5,l=9", stdin="x\n")
    assert r.returncode == 2 and "out of range" in r.stderr
