"""Building a tenant's head from its examples and storing it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from jobs.examples_io import Examples
from prune.heads.choice import fit_choice, with_calibrated_threshold
from prune.heads.intent_names import encode_names
from prune.labels import OOS_LABEL
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
    head_kind: str = "auto",
    oos_threshold: float | str | None = None,
    intent_names: str = "auto",
) -> TenantRecord:
    """Embed the examples, fit the head (``auto``: the kind that cross-validates better on them;
    with ``intent_names`` auto, the intent names join the examples when they are informative),
    calibrate the out-of-scope threshold (``auto``: from the held-out scores of the examples, and
    the examples labelled ``oos``), and store it in one atomic write."""
    validate_tenant_id(tenant)
    embeddings = embed_with_progress(encoder, examples.texts, f"embedding {tenant} examples")
    is_oos = np.array([label == OOS_LABEL for label in examples.labels], dtype=bool)
    x, labels = embeddings[~is_oos], [label for label in examples.labels if label != OOS_LABEL]
    fixed = oos_threshold if isinstance(oos_threshold, float) else None
    names = encode_names(encoder, labels) if intent_names == "auto" and labels else None
    choice = fit_choice(head_kind, x, labels, fixed, names, held_out=oos_threshold == "auto")
    if oos_threshold == "auto":
        choice = with_calibrated_threshold(choice, embeddings[is_oos])
    head, fit = choice.head, choice.summary()
    fit = {**fit, "requested": head_kind, "dtype": encoder.options.dtype, "oos_threshold": oos_threshold}
    counts = {k: v for k, v in examples.counts.items() if k != OOS_LABEL}
    store.put(tenant, head, encoder.fingerprint, encoder.prune.to_dict() if encoder.prune else None, counts, fit)
    return store.get(tenant)
