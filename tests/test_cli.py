"""The jobs CLI as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_demo_classifies_sample_utterances() -> None:
    r = run("demo", "--prune", "s=15,q=0.8,l=1", "--dtype", "bfloat16")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 + 24
    predicted = [line.split()[0] for line in lines[1:-1]]
    expected = [line.split(",")[-1] for line in (REPO / "examples" / "acme_examples.csv").read_text().splitlines()[1:]]
    # the 24 utterances are 3 per intent, in the examples' intent order
    truth = [label for label in dict.fromkeys(expected) for _ in range(3)]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    assert accuracy >= 0.8


def test_encode_jsonl() -> None:
    r = run("encode", stdin="hello world\n\n")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["tokens"] for row in rows] == [4, 2]
    assert len(rows[0]["embedding"]) == 384


def test_bad_prune_config_exit_2() -> None:
    r = run("demo", "--prune", "s=1,q=0.5,l=1")
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
