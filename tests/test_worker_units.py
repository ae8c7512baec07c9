"""The actor's pieces without Ray: the head cache, classify_table and ClassifierWorker.process,
with a real Redis and a deterministic fake encoder (the encoder is not their subject)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prune.heads.head import centroid_head
from tests.fakes import FakeEncoder
from workers.classify import HeadCache, classify_table
from workers.connection import connect
from workers.job_spec import Columns, JobAddress, JobSpec
from workers.tenant_store import CentroidStore
from workers.unit import Unit

EXAMPLES = {"card_lost": ["i lost my card", "my card is lost"], "top_up": ["top up my account", "add money"]}


@pytest.fixture
def store(redis_url: str, prefix: str) -> CentroidStore:
    return CentroidStore(connect(redis_url), prefix)


def put_tenant(store: CentroidStore, tenant: str, encoder: FakeEncoder, threshold: float | None = None) -> int:
    texts = [t for ts in EXAMPLES.values() for t in ts]
    labels = [label for label, ts in EXAMPLES.items() for _ in ts]
    head = centroid_head(encoder.encode(texts).embeddings, labels, threshold)
    return store.put(tenant, head, encoder.fingerprint, None, {k: len(v) for k, v in EXAMPLES.items()})


def test_head_cache_fetches_a_head_once_per_version(store: CentroidStore) -> None:
    enc = FakeEncoder()
    v1 = put_tenant(store, "acme", enc)
    cache = HeadCache(store, enc.fingerprint)
    first = cache.lookup({"acme", "nobody"})
    assert first["nobody"] == "unknown_tenant" and first["acme"].version == v1  # type: ignore[union-attr]
    assert cache.lookup({"acme"})["acme"] is first["acme"]  # same version: the cached record
    v2 = put_tenant(store, "acme", enc)
    again = cache.lookup({"acme"})["acme"]
    assert again.version == v2 > v1 and again is not first["acme"]  # type: ignore[union-attr]


def test_head_cache_statuses_for_other_models_and_bad_ids(store: CentroidStore) -> None:
    put_tenant(store, "acme", FakeEncoder(fingerprint="other-model"))
    got = HeadCache(store, FakeEncoder().fingerprint).lookup({"acme", "not a valid id!"})
    assert got == {"acme": "model_mismatch", "not a valid id!": "unknown_tenant"}


def test_classify_table_labels_every_row_and_keeps_the_input(store: CentroidStore) -> None:
    enc = FakeEncoder()
    put_tenant(store, "acme", enc, threshold=0.5)  # scores here: 0.97, 0.59, then 0.34 for the weather
    table = pa.table(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "tenant": ["acme", "acme", "acme", "nobody", None, "acme"],
            "text": ["i lost my card", "add money", "what is the weather", "lost card", "add money", "   "],
        }
    )
    enc.calls = 0
    result = classify_table(table, enc, HeadCache(store, enc.fingerprint), Columns("text", "tenant", "id"))
    out = result.table.to_pylist()
    assert [r["id"] for r in out] == [1, 2, 3, 4, 5, 6] and result.table.num_rows == 6
    assert [r["status"] for r in out] == ["ok", "ok", "out_of_scope", "unknown_tenant", "unknown_tenant", "empty_text"]
    assert [r["intent"] for r in out] == ["card_lost", "top_up", None, None, None, None]
    assert out[0]["score"] > out[1]["score"] > 0.5 > out[2]["score"] and out[3]["score"] is None
    assert result.statuses == {"ok": 2, "out_of_scope": 1, "unknown_tenant": 2, "empty_text": 1}
    assert result.tokens == 6 + 4 + 6 and enc.calls == 1  # only the 3 acme rows were encoded, in one call


def test_classify_table_with_one_tenant_for_all_rows(store: CentroidStore) -> None:
    enc = FakeEncoder()
    put_tenant(store, "acme", enc)
    table = pa.table({"text": ["my card is lost", "top up my account"]})
    result = classify_table(table, enc, HeadCache(store, enc.fingerprint), Columns("text", None, None, "acme"))
    assert result.table.column("intent").to_pylist() == ["card_lost", "top_up"]
    assert "tenant" not in result.table.column_names and result.versions == {"acme": store.version("acme")}


def test_worker_process_writes_one_complete_part(tmp_path: Path, redis_url: str, prefix: str) -> None:
    from workers.actor import ClassifierWorker

    enc = FakeEncoder(keep=3)
    store = CentroidStore(connect(redis_url), prefix)
    put_tenant(store, "acme", enc)
    store.pin("j1")  # what the driver does when it submits job j1
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"tenant": ["acme"] * 10, "text": ["i lost my card"] * 5 + ["add money"] * 5}), src)
    out = tmp_path / "out"
    out.mkdir()
    spec = JobSpec(input=str(src), output=str(out), columns=Columns("text", "tenant"))
    worker = ClassifierWorker(spec, JobAddress(redis_url=redis_url, prefix=prefix, job_id="j1"), 1, "a0", enc)
    unit = Unit("u1", str(src), (0,), start=2, rows=6, offset=2)
    stats = worker.process(unit.to_dict())
    parts = list(out.iterdir())
    assert [p.name for p in parts] == ["part-u1.parquet"]  # no temporary file left
    written = pq.read_table(parts[0])
    assert written.column("intent").to_pylist() == ["card_lost"] * 3 + ["top_up"] * 3  # rows 2..7 of the file
    meta = json.loads(written.schema.metadata[b"fewshot_jobs"])
    assert meta["unit"] == "u1" and meta["start_row"] == 2 and meta["model_fingerprint"] == enc.fingerprint
    assert stats.rows == 6 and stats.statuses == {"ok": 6} and stats.tokens_kept == 18 < stats.tokens
    assert stats.actor == "a0" and stats.total_s >= stats.encode_s >= 0
