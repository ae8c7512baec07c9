"""Tenants in a real Redis: round trip, isolation, fingerprints, bad input, concurrency, embedded server."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from safetensors.torch import load_file, save_file

from jobs.examples_io import Examples, read_examples
from prune import Encoder
from prune.heads.head import centroid_head, linear_head
from tests.conftest import DATA_DIR, REDIS_PASSWORD, read_jsonl
from workers.connection import RedisUnavailable, connect
from workers.tenant_store import CentroidStore, FingerprintMismatch, UnknownTenant

REPO = Path(__file__).resolve().parent.parent


def jobs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def k_shot(rows: list[dict[str, str]], k: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    return [r for label in sorted(by_label) for r in rng.sample(by_label[label], k)]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def banking_10shot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    rows = k_shot(read_jsonl(DATA_DIR / "banking77" / "train.jsonl"), 10, seed=0)
    return write_jsonl(tmp_path_factory.mktemp("ex") / "banking10.jsonl", rows), rows


@pytest.mark.parametrize("kind", ["centroid", "linear"])
def test_round_trip_same_predictions_as_in_memory(
    kind: str, banking_10shot, banking_test, encoder: Encoder, redis_url: str, prefix: str
) -> None:
    path, rows = banking_10shot
    r = jobs(
        "tenants",
        "add",
        "bank",
        "--examples",
        str(path),
        "--head",
        kind,
        "--intent-names",  # the plain in-memory fit below (the names' own test is further down)
        "off",
        "--prune",  # as the in-memory encoder below (the default is the job's: tuned, auto)
        "none",
        "--dtype",
        "float32",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
    )
    assert r.returncode == 0, r.stderr
    assert "77 intents, 770 examples" in r.stdout
    assert REDIS_PASSWORD not in r.stdout + r.stderr
    stored = CentroidStore(connect(redis_url), prefix).get("bank", fingerprint=encoder.fingerprint)
    emb = encoder.encode([x["text"] for x in rows]).embeddings
    labels = [x["label"] for x in rows]
    memory = centroid_head(emb, labels) if kind == "centroid" else linear_head(emb, labels)
    test = encoder.encode([x["text"] for x in banking_test[:600]]).embeddings
    got = stored.head.label_of(stored.head.classify(test))
    want = memory.label_of(memory.classify(test))
    assert got == want
    assert stored.head.kind == kind and stored.example_counts == {lab: 10 for lab in set(labels)}
    accuracy = np.mean([g == x["label"] for g, x in zip(got, banking_test[:600], strict=True)])
    assert accuracy > 0.7


def test_overlapping_labels_stay_per_tenant(encoder: Encoder, redis_url: str, prefix: str) -> None:
    store = CentroidStore(connect(redis_url), prefix)
    a = centroid_head(
        encoder.encode(["card lost", "where is my card", "exchange rate?"]).embeddings, ["card", "card", "fx"]
    )
    b = centroid_head(
        encoder.encode(["pizza order", "cancel my pizza", "weather today"]).embeddings, ["card", "card", "weather"]
    )
    store.put("alpha", a, encoder.fingerprint, None, {"card": 2, "fx": 1})
    store.put("beta", b, encoder.fingerprint, None, {"card": 2, "weather": 1})
    ra, rb = store.get("alpha"), store.get("beta")
    assert ra.head.labels == ("card", "fx") and rb.head.labels == ("card", "weather")
    assert np.array_equal(ra.head.weight, a.weight) and np.array_equal(rb.head.weight, b.weight)
    assert not np.allclose(ra.head.weight[0], rb.head.weight[0])
    assert store.remove("alpha")
    with pytest.raises(UnknownTenant):
        store.get("alpha")
    assert store.get("beta").version == rb.version
    assert store.tenants() == ["beta"]


def test_versions_change_on_every_update(encoder: Encoder, redis_url: str, prefix: str) -> None:
    store = CentroidStore(connect(redis_url), prefix)
    head = centroid_head(encoder.encode(["a b", "c d"]).embeddings, ["x", "y"])
    v1 = store.put("t", head, "fp", None, {"x": 1, "y": 1})
    first = store.get("t")
    v2 = store.put("t", head, "fp", None, {"x": 1, "y": 1})
    assert v2 > v1 and store.version("t") == v2
    assert store.get("t").created == first.created
    assert store.version("nobody") is None


def test_head_from_another_model_is_refused(
    encoder: Encoder, model_dir: Path, tmp_path: Path, redis_url: str, prefix: str
) -> None:
    import shutil

    store = CentroidStore(connect(redis_url), prefix)
    head = centroid_head(encoder.encode(["card lost", "exchange rate?"]).embeddings, ["card", "fx"])
    store.put("acme", head, encoder.fingerprint, None, {"card": 1, "fx": 1})
    other_dir = tmp_path / "other"
    shutil.copytree(model_dir, other_dir)
    state = load_file(str(other_dir / "model.safetensors"))
    state["encoder.layer.5.output.dense.bias"] += 0.05
    save_file(state, str(other_dir / "model.safetensors"))
    other = Encoder(other_dir)
    with pytest.raises(
        FingerprintMismatch, match=rf"built with model fingerprint {encoder.fingerprint}.*{other.fingerprint}"
    ):
        store.get("acme", fingerprint=other.fingerprint)
    assert store.get("acme", fingerprint=encoder.fingerprint).head.labels == ("card", "fx")


def _bad_files(tmp: Path) -> dict[str, tuple[Path, list[str], str]]:
    good = [{"text": "where is my card", "label": "card"}, {"text": "rates?", "label": "fx"}]
    null_parquet = tmp / "nulls.parquet"
    pq.write_table(pa.table({"text": ["ok", None], "label": ["a", "b"]}), null_parquet)
    (tmp / "empty.csv").write_text("")
    (tmp / "header_only.csv").write_text("text,label\n")
    (tmp / "comma.csv").write_text("text,label\nwhere is my card,card\nI lost my card, help,card\n")
    return {
        "missing columns": (write_jsonl(tmp / "cols.jsonl", [{"utterance": "x", "label": "a"}]), [], "missing column"),
        "empty file": (tmp / "empty.csv", [], "empty"),
        "header only": (tmp / "header_only.csv", [], "no example rows"),
        "zero examples for an intent": (
            write_jsonl(tmp / "good.jsonl", good),
            ["--intents", "card,fx,refund"],
            "zero examples",
        ),
        "null texts jsonl": (
            write_jsonl(tmp / "null.jsonl", [*good, {"text": None, "label": "fx"}]),
            [],
            "row 3: text is null",
        ),
        "null texts parquet": (null_parquet, [], "row 2: text is null"),
        "empty label": (
            write_jsonl(tmp / "nolabel.jsonl", [*good, {"text": "hi", "label": " "}]),
            [],
            "label is empty",
        ),
        "unknown format": (tmp / "x.txt", [], "unknown format"),
        "unquoted comma in a csv text": (tmp / "comma.csv", [], "line 3 has 3 field(s)"),
        "one text under two intents": (
            write_jsonl(tmp / "conflict.jsonl", [*good, {"text": "Where is  my card", "label": "fx"}]),
            [],
            "1 text(s) are labelled with more than one intent (row 1 says 'card', row 3 says 'fx')",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_files(Path(tempfile.mkdtemp())).keys()))
def test_bad_examples_clear_error_nothing_written(case: str, tmp_path: Path, redis_url: str, prefix: str) -> None:
    path, extra, message = _bad_files(tmp_path)[case]
    if case == "unknown format":
        path.write_text("text,label\nx,y\n")
    r = jobs(
        "tenants", "add", "acme", "--examples", str(path), *extra, "--redis-url", redis_url, "--redis-prefix", prefix
    )
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert CentroidStore(connect(redis_url), prefix).tenants() == []


def test_examples_with_a_byte_order_mark_and_quoted_commas_read_as_written(tmp_path: Path) -> None:
    # Excel writes a UTF-8 byte-order mark before the header; a quoted text keeps its comma
    (tmp_path / "bom.csv").write_bytes('\ufefftext,label\n"I lost my card, help",card\n\nrates?,fx\n'.encode())
    (tmp_path / "bom.jsonl").write_bytes('\ufeff{"text": "rates?", "label": "fx"}\n'.encode())
    assert read_examples(tmp_path / "bom.csv") == Examples(["I lost my card, help", "rates?"], ["card", "fx"])
    assert read_examples(tmp_path / "bom.jsonl") == Examples(["rates?"], ["fx"])


@pytest.mark.parametrize("tenant", ["a:b*", "x" * 300, ""])
def test_invalid_tenant_ids(tenant: str, redis_url: str, prefix: str) -> None:
    r = jobs(
        "tenants",
        "add",
        tenant,
        "--examples",
        str(REPO / "examples" / "acme_examples.csv"),
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
    )
    assert r.returncode == 2
    assert "invalid tenant id" in r.stderr
    assert CentroidStore(connect(redis_url), prefix).tenants() == []


def test_unreachable_redis_and_wrong_password(redis_url: str) -> None:
    from tests.conftest import free_port

    r = jobs("tenants", "list", "--redis-url", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert r.returncode == 3 and "cannot reach Redis" in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    wrong = redis_url.replace(REDIS_PASSWORD, "not-the-password")
    r = jobs("tenants", "add", "acme", "--examples", str(REPO / "examples" / "acme_examples.csv"), "--redis-url", wrong)
    assert r.returncode == 3 and "refused the credentials" in r.stderr
    assert "not-the-password" not in r.stdout + r.stderr
    r = jobs("tenants", "list", "--redis-url", redis_url.replace(f":{REDIS_PASSWORD}@", ""))
    assert r.returncode == 3 and "requires a password" in r.stderr
    r = jobs("tenants", "list", "--redis-url", "http://example")
    assert r.returncode == 2 and "scheme" in r.stderr
    with pytest.raises(RedisUnavailable):
        connect(wrong)


def test_concurrent_adds_leave_one_consistent_version(
    tmp_path: Path, encoder: Encoder, redis_url: str, prefix: str
) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "lost card", "label": "card"}, {"text": "rate", "label": "fx"}])
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [{"text": "hello", "label": "greet"}, {"text": "bye", "label": "bye"}, {"text": "thanks", "label": "thanks"}],
    )
    cmd = [sys.executable, "-m", "jobs", "tenants", "add", "same", "--redis-url", redis_url, "--redis-prefix", prefix]
    cmd += ["--head", "centroid", "--prune", "none", "--dtype", "float32"]  # as the in-memory heads below
    procs = [
        subprocess.Popen(
            [*cmd, "--examples", str(p)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for p in (a, b)
    ]
    assert all(p.wait(600) == 0 for p in procs), [p.stderr.read() for p in procs]  # type: ignore[union-attr]
    got = CentroidStore(connect(redis_url), prefix).get("same")
    heads = {}
    for p in (a, b):
        rows = read_jsonl(p)
        heads[p.name] = centroid_head(encoder.encode([r["text"] for r in rows]).embeddings, [r["label"] for r in rows])
    match = [n for n, h in heads.items() if h.labels == got.head.labels]
    assert len(match) == 1
    h = heads[match[0]]
    assert np.allclose(h.weight, got.head.weight, atol=1e-6)
    assert sum(got.example_counts.values()) == len(read_jsonl(tmp_path / match[0]))
    assert got.version == 2  # both wrote; the last write is whole


@pytest.mark.system  # CLI processes that start the embedded Redis (5 s)
def test_embedded_server_started_reused_and_persistent() -> None:
    home = tempfile.mkdtemp(prefix="jh", dir="/tmp")
    env_clean = {k: v for k, v in os.environ.items() if k != "JOBS_REDIS_URL"}
    env_clean["JOBS_HOME"] = home

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jobs", *args], capture_output=True, text=True, cwd=REPO, env=env_clean, timeout=600
        )

    try:
        r = run("tenants", "add", "acme", "--examples", str(REPO / "examples" / "acme_examples.csv"))
        assert r.returncode == 0, r.stderr
        pid = (Path(home) / "redis" / "redis.pid").read_text().strip()
        assert "acme" in run("tenants", "list").stdout
        assert (Path(home) / "redis" / "redis.pid").read_text().strip() == pid  # reused, not restarted
        assert run("redis", "stop").stdout.strip() == "stopped"
        r = run("tenants", "show", "acme")  # starts a new server that reloads the data
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["examples_per_intent"]["card_arrival"] == 5
        assert (Path(home) / "redis" / "redis.pid").read_text().strip() != pid
        assert (Path(home) / "redis" / "appendonly.aof").exists()
    finally:
        run("redis", "stop")


def test_show_unknown_tenant_exit_2(redis_url: str, prefix: str) -> None:
    r = jobs("tenants", "show", "ghost", "--redis-url", redis_url, "--redis-prefix", prefix)
    assert r.returncode == 2 and "unknown tenant 'ghost'" in r.stderr
    r = jobs("tenants", "remove", "ghost", "--redis-url", redis_url, "--redis-prefix", prefix)
    assert r.returncode == 2


def test_store_rejects_bad_prefix() -> None:
    with pytest.raises(ValueError, match="prefix"):
        CentroidStore(redis.Redis(), "bad prefix!")


@pytest.mark.system  # jobs tenants add and eval in CLI processes, on the real model
def test_auto_head_says_what_it_chose_and_tenants_eval_scores_it(
    tmp_path: Path, redis_url: str, prefix: str, banking_10shot: tuple[Path, list[dict[str, str]]]
) -> None:
    """The default head is auto: `tenants show` names the kind kept and both kinds' held-out
    accuracy; `tenants eval` scores the stored head on a labelled sample as the job would."""
    _, rows = banking_10shot
    intents = sorted({r["label"] for r in rows})[:8]
    few = write_jsonl(tmp_path / "few.jsonl", [r for r in rows if r["label"] in intents])
    r = jobs(
        "tenants",
        "add",
        "bank",
        "--examples",
        str(few),
        "--oos-threshold",
        "auto",
        "--redis-url",
        redis_url,
        "--redis-prefix",
        prefix,
    )
    assert r.returncode == 0, r.stderr
    shown = json.loads(jobs("tenants", "show", "bank", "--redis-url", redis_url, "--redis-prefix", prefix).stdout)
    fit = shown["fit"]
    assert fit["requested"] == "auto" and fit["chosen"] == shown["head"] and fit["folds"] == 5
    assert set(fit["cv_accuracy"]) == {"centroid", "linear"} and fit["chosen"] == max(
        fit["cv_accuracy"], key=lambda k: (fit["cv_accuracy"][k], k == "linear")
    )
    assert shown["oos_threshold"] is not None
    names = fit["intent_names"]  # BANKING77's names are words: they classify its examples far above chance
    assert names["used"] and names["nearest_name_accuracy"] > 3 * names["chance"] == 3 / 8
    assert "intent names used" in r.stdout
    test_rows = [x for x in read_jsonl(DATA_DIR / "banking77" / "test.jsonl") if x["label"] in intents]
    sample = write_jsonl(
        tmp_path / "sample.jsonl", [*test_rows, {"text": "what is the capital of peru", "label": "oos"}]
    )
    r = jobs("tenants", "eval", "bank", "--examples", str(sample), "--redis-url", redis_url, "--redis-prefix", prefix)
    assert r.returncode == 0, r.stderr
    assert f"{len(test_rows) + 1} labelled utterances, accuracy" in r.stdout and "most frequent confusions" in r.stdout
    accuracy = float(r.stdout.split("accuracy ")[1].split("%")[0])
    assert 60 < accuracy <= 100 and all(i in r.stdout for i in intents)


@pytest.mark.system  # jobs tenants add in a CLI process, on the real model
def test_opaque_intent_names_are_not_used(
    tmp_path: Path, redis_url: str, prefix: str, banking_10shot: tuple[Path, list[dict[str, str]]]
) -> None:
    """Intents named by codes: the names carry nothing, so the head is fitted on the examples alone."""
    _, rows = banking_10shot
    intents = sorted({r["label"] for r in rows})[:8]
    code = {label: f"intent_{i + 17}" for i, label in enumerate(intents)}
    few = write_jsonl(tmp_path / "coded.jsonl", [{**r, "label": code[r["label"]]} for r in rows if r["label"] in code])
    r = jobs("tenants", "add", "coded", "--examples", str(few), "--redis-url", redis_url, "--redis-prefix", prefix)
    assert r.returncode == 0, r.stderr
    assert "intent names not used" in r.stdout
    fit = json.loads(jobs("tenants", "show", "coded", "--redis-url", redis_url, "--redis-prefix", prefix).stdout)["fit"]
    assert fit["intent_names"]["used"] is False and fit["intent_names"]["nearest_name_accuracy"] < 0.3
