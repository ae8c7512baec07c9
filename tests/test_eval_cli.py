"""jobs eval / tune / train-scorer end to end on small slices of the real datasets, and the reproduction."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prune import Encoder, PruneConfig
from prune.cpu import native_bf16
from tests.conftest import DATA_DIR, read_jsonl

pytestmark = pytest.mark.system  # jobs eval and tune on the real model

REPO = Path(__file__).resolve().parent.parent


def jobs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=os.environ.copy(),
        timeout=900,
    )


def _slice(rows: list[dict[str, str]], intents: list[str], n: int, oos: int = 0) -> list[dict[str, str]]:
    out = [r for it in intents for r in [x for x in rows if x["label"] == it][:n]]
    return out + [r for r in rows if r["label"] == "oos"][:oos]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 BANKING77 intents (train/test) and 8 CLINC150 intents with out-of-scope rows (train/valid/test)."""
    root = tmp_path_factory.mktemp("data")
    for ds, splits, oos in (("banking77", ("train", "test"), 0), ("clinc150", ("train", "valid", "test"), 15)):
        rows = {s: read_jsonl(DATA_DIR / ds / f"{s}.jsonl") for s in splits}
        intents = sorted({r["label"] for r in rows["train"]} - {"oos"})
        intents = random.Random(3).sample(intents, 8)
        (root / ds).mkdir()
        for s in splits:
            sliced = _slice(rows[s], intents, 24 if s == "train" else 8, oos)
            (root / ds / f"{s}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sliced))
    return root


def test_eval_side_by_side(tiny_data: Path, tmp_path: Path) -> None:
    out, md = tmp_path / "eval.json", tmp_path / "eval.md"
    r = jobs(
        "eval",
        "--data-dir",
        str(tiny_data),
        "--shots",
        "1,3",
        "--seeds",
        "2",
        "--head",
        "centroid",
        "--head",
        "linear",
        "--config",
        "fp32",
        "--config",
        "bf16:s=4,q=0.5,l=1",
        "--timing-repeats",
        "1",
        "--out",
        str(out),
        "--markdown",
        str(md),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert [v["name"] for v in report["variants"]] == ["fp32", "bf16:s=4,q=0.5,l=1"]
    rows = report["results"]
    assert len(rows) == 2 * 2 * 2 * 2  # datasets x variants x heads x shots
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and row["seeds"] == 2
        for key in ("macro_f1", "weighted_f1", "macro_precision", "weighted_recall", "encode_seconds"):
            assert key in row
        assert (row["dataset"] == "clinc150") == ("oos_recall" in row)
        if row["variant"] == "fp32":
            assert row["tokens_kept"] == row["tokens"]
        else:
            assert row["tokens_kept"] < row["tokens"]
    assert report["timing"]["speedup"]["fp32"] == 1.0
    table = md.read_text()
    assert "| banking77 | linear | 3 |" in table and "OOS recall" in table
    assert table.strip() in r.stdout


def test_eval_bad_config_and_missing_data(tiny_data: Path, tmp_path: Path) -> None:
    r = jobs("eval", "--data-dir", str(tiny_data), "--config", "fp16")
    assert r.returncode == 2 and "DTYPE" in r.stderr
    r = jobs("eval", "--data-dir", str(tmp_path), "--dataset", "nope")
    assert r.returncode == 2 and "not found" in r.stderr and "holds no DATASET/SPLIT.jsonl files" in r.stderr
    r = jobs("eval", "--data-dir", str(tiny_data), "--dataset", "banking77", "--split", "valid")
    assert r.returncode == 2 and "holds banking77 (test, train); clinc150 (test, train, valid)" in r.stderr


def test_tune_selects_and_reports(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "tune.json"
    r = jobs(
        "tune",
        "--data-dir",
        str(tiny_data),
        "--shots",
        "3",
        "--seeds",
        "1",
        "--grid-s",
        "4",
        "--grid-q",
        "0.3,0.6",
        "--grid-l",
        "1",
        "--grid-score",
        "attention,norm",
        "--max-drop",
        "100",
        "--timing-repeats",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert {t["dataset"] for t in report["tasks"]} == {"banking77", "clinc150"}
    assert len(report["measurements"]) == 1 + 4
    chosen = report["chosen"]
    # with an unbounded drop, the fastest timed config wins
    assert chosen["speedup"] == max(m["speedup"] for m in report["timed"])
    assert "chosen:" in r.stdout and "on the test splits" in r.stdout
    r = jobs("tune", "--data-dir", str(tiny_data), "--mode", "budget")
    assert r.returncode == 2 and "--max-kept" in r.stderr


def test_tune_never_reads_test(tiny_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    for ds in ("banking77", "clinc150"):
        (data / ds / "test.jsonl").unlink()
    r = jobs(
        "tune",
        "--data-dir",
        str(data),
        "--shots",
        "1",
        "--seeds",
        "1",
        "--grid-s",
        "4",
        "--grid-q",
        "0.5",
        "--grid-l",
        "1",
        "--grid-score",
        "norm",
        "--no-confirm",
        "--timing-repeats",
        "1",
    )
    assert r.returncode == 0, r.stderr


def test_learned_scorer_trains_loads_and_prunes(model_dir: Path, tmp_path: Path, banking_texts: list[str]) -> None:
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    from prune.scorer import BESIDE_MODEL
    from prune.search.train_scorer import train_scorers

    enc = Encoder(copy)
    losses = train_scorers(enc, banking_texts[:300], copy / BESIDE_MODEL, steps=20, log=lambda m: None)
    assert set(losses) == {f"layer{i}" for i in range(1, 6)}
    pruned = Encoder(copy, PruneConfig(4, 0.5, 2, "learned"))
    res = pruned.encode(banking_texts[:50])
    assert (res.tokens_kept < res.tokens).any()
    assert abs(float((res.embeddings * enc.encode(banking_texts[:50]).embeddings).sum(1).mean())) > 0.8


def test_learned_scorer_missing_is_a_clear_error(model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import prune.scorer

    monkeypatch.setattr(prune.scorer, "PACKAGED_DIR", tmp_path / "none")
    monkeypatch.setenv("JOBS_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="train-scorer"):
        Encoder(model_dir, PruneConfig(4, 0.5, 2, "learned"))


def _eval(tmp_path: Path, *args: str) -> dict[tuple[str, str, int], float]:
    out = tmp_path / "eval.json"
    # bf16 where the CPU has it (within 0.1 pt of fp32: docs/performance.md), at about twice the speed
    dtype = "bf16" if native_bf16() else "fp32"
    common = ["--data-dir", str(DATA_DIR), "--shots", "5,10", "--seeds", "5", "--config", dtype]
    r = jobs("eval", *common, "--timing-repeats", "1", "--out", str(out), *args)
    assert r.returncode == 0, r.stderr
    return {(x["dataset"], x["head"], x["k"]): 100 * x["accuracy"] for x in json.loads(out.read_text())["results"]}


@pytest.mark.system
def test_eval_reproduces_reference_numbers_and_the_auto_head_beats_them(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2, 5 seeds: the nearest centroid gives BANKING77 77.0 / 81.0 and CLINC150
    86.3 / 89.1 (+-1 pt) at 5 / 10 shots. The default head (auto), on the first of those
    seeds' samples (for time), is at least 2 pt above it on BANKING77 (docs/performance.md has every
    cell with 5 seeds; CLINC150's 150 intents make auto slow here). The reference is the plain
    centroid of the examples, so the intent names stay out of it; the default head has them."""
    acc = _eval(tmp_path, "--head", "centroid", "--intent-names", "off")
    reference = {("banking77", 5): 77.0, ("banking77", 10): 81.0, ("clinc150", 5): 86.3, ("clinc150", 10): 89.1}
    for (dataset, k), want in reference.items():
        assert abs(acc[(dataset, "centroid", k)] - want) <= 1.0, (
            f"{dataset} {k}-shot: {acc[(dataset, 'centroid', k)]:.1f}"
        )
    auto = _eval(tmp_path, "--head", "auto", "--dataset", "banking77", "--seeds", "1")
    for k in (5, 10):  # seed 0 against 0-4: the margin is 4-5 pt (docs), the seeds' spread about 1 pt
        assert auto[("banking77", "auto", k)] >= acc[("banking77", "centroid", k)] + 2.0, (auto, acc)
