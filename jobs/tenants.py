"""Building a tenant's head from its examples and storing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from jobs.examples_io import Examples
from prune.head import fit_head
from workers.tenant_store import CentroidStore, TenantRecord, validate_tenant_id

if TYPE_CHECKING:
    from prune import Encoder

CHUNK = 512


def embed_with_progress(encoder: Encoder, texts: list[str], desc: str) -> np.ndarray:
    """Encode in chunks with a progress bar on stderr (hidden when not a terminal)."""
    parts = []
    with tqdm(total=len(texts), desc=desc, unit="ex", disable=None, leave=False) as bar:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            parts.append(encoder.encode(chunk).embeddings)
            bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def add_tenant(
    store: CentroidStore,
    encoder: Encoder,
    tenant: str,
    examples: Examples,
    head_kind: str = "centroid",
    oos_threshold: float | None = None,
) -> TenantRecord:
    """Embed the examples, fit the head, and store it in one atomic write."""
    validate_tenant_id(tenant)
    embeddings = embed_with_progress(encoder, examples.texts, f"embedding {tenant} examples")
    head = fit_head(head_kind, embeddings, examples.labels, oos_threshold)
    store.put(tenant, head, encoder.fingerprint, encoder.prune.to_dict() if encoder.prune else None, examples.counts)
    return store.get(tenant)
