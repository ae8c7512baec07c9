"""The few-shot head: a matrix and a bias over L2-normalised embeddings.

The nearest-centroid head stores the renormalised per-intent means as its matrix (bias 0),
so its logits are cosine similarities. Any head of the same shape classifies the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Head:
    labels: tuple[str, ...]
    weight: np.ndarray  # [C, D] float32
    bias: np.ndarray  # [C] float32
    oos_threshold: float | None = None  # scores below it are out of scope

    def __post_init__(self) -> None:
        c = len(self.labels)
        if c == 0:
            raise ValueError("a head needs at least one label")
        if len(set(self.labels)) != c:
            raise ValueError("head labels must be unique")
        if self.weight.ndim != 2 or self.weight.shape[0] != c or self.bias.shape != (c,):
            raise ValueError(
                f"head shapes disagree: {c} labels, weight {self.weight.shape}, bias {self.bias.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, C] logits (cosine similarities for a centroid head)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [N, {self.dim}], got {embeddings.shape}")
        return embeddings @ self.weight.T + self.bias

    def classify(self, embeddings: np.ndarray) -> Prediction:
        logits = self.scores(embeddings)  # [N, C]
        n = logits.shape[0]
        if len(self.labels) == 1:
            top = np.zeros(n, dtype=np.int64)
            best = logits[:, 0]
            margin = np.full(n, np.inf, dtype=np.float32)
        else:
            two = np.argpartition(-logits, 1, axis=1)[:, :2]  # [N, 2] best two, unordered
            pair = np.take_along_axis(logits, two, axis=1)
            first = pair.argmax(1)
            top = two[np.arange(n), first]
            best = pair[np.arange(n), first]
            margin = best - pair[np.arange(n), 1 - first]
        in_scope = np.ones(n, dtype=bool) if self.oos_threshold is None else best >= self.oos_threshold
        return Prediction(
            label_index=top.astype(np.int64),
            score=best.astype(np.float32),
            margin=margin.astype(np.float32),
            in_scope=in_scope,
        )

    def label_of(self, prediction: Prediction) -> list[str | None]:
        return [
            self.labels[i] if ok else None
            for i, ok in zip(prediction.label_index.tolist(), prediction.in_scope.tolist(), strict=True)
        ]


@dataclass(frozen=True)
class Prediction:
    label_index: np.ndarray  # [N] int64 best intent
    score: np.ndarray  # [N] float32 its logit
    margin: np.ndarray  # [N] float32 best minus runner-up
    in_scope: np.ndarray  # [N] bool score >= the head's threshold


def centroid_head(embeddings: np.ndarray, labels: Sequence[str], oos_threshold: float | None = None) -> Head:
    """Per-intent mean of L2-normalised example embeddings, renormalised. Labels sorted."""
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(embeddings)} embeddings but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no examples: a head needs at least one example per intent")
    names = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    sums = np.zeros((len(names), x.shape[1]), dtype=np.float64)
    np.add.at(sums, np.array([index[label] for label in labels]), x)
    centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)
    return Head(names, centroids.astype(np.float32), np.zeros(len(names), np.float32), oos_threshold)
