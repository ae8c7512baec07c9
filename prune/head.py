"""The few-shot heads: a matrix and a bias over L2-normalised embeddings.

Both kinds share one shape, so one store holds either:

- ``centroid``: the renormalised per-intent means as the matrix, bias 0; the score is the
  cosine similarity to the best intent.
- ``linear``: multinomial logistic regression fitted on the frozen embeddings; the score is
  the softmax probability of the best intent.

The margin is the score of the best intent minus that of the runner-up, in the same units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from prune.errors import ConfigError

HeadKind = Literal["centroid", "linear"]
HEAD_KINDS: tuple[str, ...] = ("centroid", "linear")


@dataclass(frozen=True)
class Head:
    labels: tuple[str, ...]
    weight: np.ndarray  # [C, D] float32
    bias: np.ndarray  # [C] float32
    oos_threshold: float | None = None  # scores below it are out of scope
    kind: HeadKind = "centroid"

    def __post_init__(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ConfigError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        c = len(self.labels)
        if c == 0:
            raise ValueError("a head needs at least one label")
        if len(set(self.labels)) != c:
            raise ValueError("head labels must be unique")
        if self.weight.ndim != 2 or self.weight.shape[0] != c or self.bias.shape != (c,):
            raise ValueError(f"head shapes disagree: {c} labels, weight {self.weight.shape}, bias {self.bias.shape}")

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """[N, D] -> [N, C]: cosine similarities (centroid) or class probabilities (linear)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [N, {self.dim}], got {embeddings.shape}")
        logits = embeddings.astype(np.float32) @ self.weight.T + self.bias
        if self.kind == "linear":
            logits = np.exp(logits - logits.max(1, keepdims=True))
            logits /= logits.sum(1, keepdims=True)
        return logits

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
        raise ConfigError("no examples: a head needs at least one example per intent")
    names = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
    sums = np.zeros((len(names), x.shape[1]), dtype=np.float64)
    np.add.at(sums, np.array([index[label] for label in labels]), x)
    centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-12)
    return Head(names, centroids.astype(np.float32), np.zeros(len(names), np.float32), oos_threshold)


def linear_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    oos_threshold: float | None = None,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> Head:
    """Multinomial logistic regression on the frozen embeddings, fitted with L-BFGS.

    Starts from the centroid head scaled up (a good, deterministic starting point), so the
    fit is reproducible for the same examples.
    """
    import torch

    start = centroid_head(embeddings, labels)
    index = {name: i for i, name in enumerate(start.labels)}
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))  # [N, D]
    y = torch.tensor([index[label] for label in labels])  # [N]
    w = (torch.from_numpy(start.weight.copy()) * 10.0).requires_grad_(True)  # [C, D]
    b = torch.zeros(len(start.labels), requires_grad=True)  # [C]
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Head(
        start.labels,
        w.detach().numpy().astype(np.float32),
        b.detach().numpy().astype(np.float32),
        oos_threshold,
        "linear",
    )


def fit_head(kind: str, embeddings: np.ndarray, labels: Sequence[str], oos_threshold: float | None = None) -> Head:
    if kind == "centroid":
        return centroid_head(embeddings, labels, oos_threshold)
    if kind == "linear":
        return linear_head(embeddings, labels, oos_threshold)
    raise ConfigError(f"head kind must be one of {HEAD_KINDS}, got {kind!r}")
