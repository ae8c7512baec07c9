"""Classifying one unit's rows: statuses for rows that cannot be classified, never a dropped row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from prune import Encoder
from prune.heads.head import Head
from workers.input_columns import decode_strings, normalized
from workers.job_spec import Columns
from workers.labels import (
    EMPTY_TEXT,
    INVALID_TEXT,
    MODEL_MISMATCH,
    NO_TOKENS,
    OK,
    OUT_OF_SCOPE,
    OUTPUT_FIELDS,
    UNKNOWN_TENANT,
)
from workers.tenant_store import CentroidStore, FingerprintMismatch, TenantRecord, UnknownTenant


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


@dataclass
class _Labels:
    """The output columns of a unit's rows, filled in as rows are classified."""

    status: np.ndarray  # [N] object: one of STATUSES
    intent: np.ndarray  # [N] object: label or None
    score: np.ndarray  # [N] float32, NaN where not classified
    margin: np.ndarray  # [N] float32, NaN where not classified
    tokens: np.ndarray  # [N] int32
    kept: np.ndarray  # [N] int32

    @classmethod
    def empty(cls, n: int) -> _Labels:
        return cls(
            np.full(n, OK, dtype=object),
            np.full(n, None, dtype=object),
            np.full(n, np.nan, dtype=np.float32),
            np.full(n, np.nan, dtype=np.float32),
            np.zeros(n, dtype=np.int32),
            np.zeros(n, dtype=np.int32),
        )

    def appended_to(self, table: pa.Table) -> pa.Table:
        unscored = np.isnan(self.score)  # rows that were not classified: null score and margin
        arrays = [
            pa.array(self.intent.tolist(), pa.string()),
            pa.array(self.score, pa.float32(), mask=unscored),
            pa.array(self.margin, pa.float32(), mask=~np.isfinite(self.margin)),  # no runner-up: null
            pa.array(self.status.tolist(), pa.string()),
            pa.array(self.tokens, pa.int32()),
            pa.array(self.kept, pa.int32()),
        ]
        for f, col in zip(OUTPUT_FIELDS, arrays, strict=True):
            table = table.append_column(f, col)
        return table


def classify_table(table: pa.Table, encoder: Encoder, heads: HeadCache, columns: Columns) -> UnitResult:
    """The unit's table with the output columns appended; every row gets a status."""
    n = table.num_rows
    table = normalized(table, tuple(c for c in (columns.text, columns.tenant) if c))
    texts: list[Any]
    texts, invalid, repaired = decode_strings(table.column(columns.text))
    if repaired is not None:
        table = table.set_column(table.schema.get_field_index(columns.text), columns.text, repaired)
    tenants: list[Any] = [columns.fixed_tenant] * n
    if not columns.fixed_tenant:
        tenants, _, repaired = decode_strings(table.column(columns.tenant))  # undecodable: unknown tenant
        if repaired is not None:
            table = table.set_column(table.schema.get_field_index(columns.tenant), columns.tenant, repaired)
    labels = _Labels.empty(n)
    labels.status[list(invalid)] = INVALID_TEXT
    records = heads.lookup({t for t in tenants if isinstance(t, str)})
    todo = _route(texts, tenants, records, labels)
    result = UnitResult(table)
    if todo:
        _classify(todo, texts, tenants, records, encoder, labels, result)
    values, counts = np.unique(labels.status.astype(str), return_counts=True)
    result.statuses = {str(v): int(c) for v, c in zip(values, counts, strict=True)}
    result.tokens, result.tokens_kept = int(labels.tokens.sum()), int(labels.kept.sum())
    result.table = labels.appended_to(table)
    return result


def _route(texts: list[Any], tenants: list[Any], records: dict[str, TenantRecord | str], labels: _Labels) -> list[int]:
    """The status of every row that cannot be classified; the rows that can, to encode."""
    todo: list[int] = []
    for i, (text, tenant) in enumerate(zip(texts, tenants, strict=True)):
        if labels.status[i] == INVALID_TEXT:
            continue
        if not isinstance(text, str) or not text.strip():
            labels.status[i] = EMPTY_TEXT
        elif not isinstance(tenant, str) or isinstance(records.get(tenant), str) or tenant not in records:
            labels.status[i] = records.get(tenant, UNKNOWN_TENANT) if isinstance(tenant, str) else UNKNOWN_TENANT
        else:
            todo.append(i)
    return todo


def _classify(
    todo: list[int],
    texts: list[Any],
    tenants: list[Any],
    records: dict[str, TenantRecord | str],
    encoder: Encoder,
    labels: _Labels,
    result: UnitResult,
) -> None:
    """Encode the ``todo`` rows once, then label each tenant's rows with its head."""
    start = time.perf_counter()
    enc = encoder.encode([texts[i] for i in todo])
    result.encode_seconds = time.perf_counter() - start
    idx = np.array(todo)  # [M] row of each encoded text
    labels.tokens[idx], labels.kept[idx] = enc.tokens, enc.tokens_kept
    nothing = enc.tokens <= encoder.empty_tokens  # [M] only [CLS] [SEP]: nothing to classify
    labels.status[idx[nothing]] = NO_TOKENS
    by_tenant: dict[str, list[int]] = {}
    for j, i in enumerate(todo):
        if not nothing[j]:
            by_tenant.setdefault(tenants[i], []).append(j)
    for tenant, rows in by_tenant.items():
        record = records[tenant]
        assert not isinstance(record, str)
        head: Head = record.head
        pred = head.classify(enc.embeddings[rows])  # [m, D] -> m predictions
        target = idx[rows]
        labels.score[target], labels.margin[target] = pred.score, pred.margin
        names = np.array(head.labels, dtype=object)[pred.label_index]
        labels.intent[target] = np.where(pred.in_scope, names, None)
        labels.status[target] = np.where(pred.in_scope, OK, OUT_OF_SCOPE)
        result.versions[tenant] = record.version
