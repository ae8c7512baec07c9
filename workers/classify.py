"""Classifying one unit's rows: statuses for rows that cannot be classified, never a dropped row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from prune import Encoder
from prune.head import Head
from workers.tenant_store import CentroidStore, FingerprintMismatch, TenantRecord, UnknownTenant

OK, OUT_OF_SCOPE, UNKNOWN_TENANT, EMPTY_TEXT, MODEL_MISMATCH = (
    "ok",
    "out_of_scope",
    "unknown_tenant",
    "empty_text",
    "model_mismatch",
)
STATUSES = (OK, OUT_OF_SCOPE, UNKNOWN_TENANT, EMPTY_TEXT, MODEL_MISMATCH)
OUTPUT_FIELDS = [
    pa.field("intent", pa.string()),
    pa.field("score", pa.float32()),
    pa.field("margin", pa.float32()),
    pa.field("status", pa.string()),
    pa.field("tokens", pa.int32()),
    pa.field("tokens_kept", pa.int32()),
]


class HeadCache:
    """Tenants' heads, fetched once per version: a unit checks each tenant's version (one HGET)
    and reloads the head only when it changed."""

    def __init__(self, store: CentroidStore, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self._heads: dict[str, TenantRecord] = {}

    def lookup(self, tenants: set[str]) -> dict[str, TenantRecord | str]:
        """Per tenant: its record, or the status that its rows get."""
        out: dict[str, TenantRecord | str] = {}
        for t in tenants:
            try:
                version = self.store.version(t)
            except ValueError:  # not a valid tenant id
                out[t] = UNKNOWN_TENANT
                continue
            if version is None:
                out[t] = UNKNOWN_TENANT
                continue
            cached = self._heads.get(t)
            if cached is None or cached.version != version:
                try:
                    cached = self.store.get(t, fingerprint=self.fingerprint)
                except FingerprintMismatch:
                    out[t] = MODEL_MISMATCH
                    continue
                except UnknownTenant:  # removed between the two calls
                    out[t] = UNKNOWN_TENANT
                    continue
                self._heads[t] = cached
            out[t] = cached
        return out


@dataclass
class UnitResult:
    table: pa.Table
    tokens: int = 0
    tokens_kept: int = 0
    encode_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)


def classify_table(
    table: pa.Table,
    encoder: Encoder,
    heads: HeadCache,
    text_column: str,
    tenant_column: str | None,
    fixed_tenant: str | None,
) -> UnitResult:
    n = table.num_rows
    texts: list[Any] = table.column(text_column).to_pylist()
    tenants: list[Any] = [fixed_tenant] * n if fixed_tenant else table.column(tenant_column).to_pylist()
    status = np.full(n, OK, dtype=object)
    intent = np.full(n, None, dtype=object)
    score = np.full(n, np.nan, dtype=np.float32)
    margin = np.full(n, np.nan, dtype=np.float32)
    tokens = np.zeros(n, dtype=np.int32)
    kept = np.zeros(n, dtype=np.int32)
    records = heads.lookup({t for t in tenants if isinstance(t, str)})
    todo: list[int] = []
    for i, (text, tenant) in enumerate(zip(texts, tenants, strict=True)):
        if not isinstance(text, str) or not text.strip():
            status[i] = EMPTY_TEXT
        elif not isinstance(tenant, str) or isinstance(records.get(tenant), str) or tenant not in records:
            status[i] = records.get(tenant, UNKNOWN_TENANT) if isinstance(tenant, str) else UNKNOWN_TENANT
        else:
            todo.append(i)
    result = UnitResult(table)
    if todo:
        start = time.perf_counter()
        enc = encoder.encode([texts[i] for i in todo])
        result.encode_seconds = time.perf_counter() - start
        idx = np.array(todo)
        tokens[idx], kept[idx] = enc.tokens, enc.tokens_kept
        by_tenant: dict[str, list[int]] = {}
        for j, i in enumerate(todo):
            by_tenant.setdefault(tenants[i], []).append(j)
        for tenant, rows in by_tenant.items():
            record = records[tenant]
            assert not isinstance(record, str)
            head: Head = record.head
            pred = head.classify(enc.embeddings[rows])
            target = idx[rows]
            score[target], margin[target] = pred.score, pred.margin
            labels = np.array(head.labels, dtype=object)[pred.label_index]
            intent[target] = np.where(pred.in_scope, labels, None)
            status[target] = np.where(pred.in_scope, OK, OUT_OF_SCOPE)
            result.versions[tenant] = record.version
    values, counts = np.unique(status.astype(str), return_counts=True)
    result.statuses = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    result.tokens, result.tokens_kept = int(tokens.sum()), int(kept.sum())
    unscored = np.isnan(score)  # rows that were not classified: null score and margin
    columns = [
        pa.array(intent.tolist(), pa.string()),
        pa.array(score, pa.float32(), mask=unscored),
        pa.array(margin, pa.float32(), mask=unscored),
        pa.array(status.tolist(), pa.string()),
        pa.array(tokens, pa.int32()),
        pa.array(kept, pa.int32()),
    ]
    out = table
    for f, col in zip(OUTPUT_FIELDS, columns, strict=True):
        out = out.append_column(f, col)
    result.table = out
    return result
