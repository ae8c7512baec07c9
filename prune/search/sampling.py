"""Deterministic, nested k-shot sampling.

For a seed, each intent's examples are shuffled once; the k-shot sample takes the first k of
that order. So the 5-shot sample of a seed contains its 1-, 2- and 3-shot samples (less
variance between shot counts), and the examples after position k are free for calibration.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from prune.errors import ConfigError
from prune.labels import OOS_LABEL


def intent_orders(labels: Sequence[str], seed: int) -> dict[str, list[int]]:
    """Per in-scope intent (sorted), its example indices in this seed's shuffled order."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        if label != OOS_LABEL:
            by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    return {label: rng.sample(idx, len(idx)) for label, idx in sorted(by_label.items())}


def k_shot(labels: Sequence[str], k: int, seed: int) -> list[int]:
    """Indices of k examples per intent (all of them if an intent has fewer)."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    return [i for order in intent_orders(labels, seed).values() for i in order[:k]]


def after_k(labels: Sequence[str], k: int, n: int, seed: int) -> list[int]:
    """n further examples per intent, disjoint from every j-shot sample with j <= k."""
    return [i for order in intent_orders(labels, seed).values() for i in order[k : k + n]]
