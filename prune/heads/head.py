"""The few-shot heads: a matrix and a bias over L2-normalised embeddings.

Both kinds share one shape, so one store holds either:

- ``centroid``: the renormalised per-intent means as the matrix, bias 0; the score is the
  cosine similarity to the best intent.
- ``linear``: multinomial logistic regression fitted on the frozen embeddings (scikit-learn);
  the score is the softmax probability of the best intent.
- ``auto`` (the default of ``jobs tenants add``) is not a third kind: it stores whichever of the
  two cross-validates better on the tenant's own examples (``prune.heads.choice``).

The margin is the score of the best intent minus that of the runner-up, in the same units.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from prune.errors import ConfigError

HeadKind = Literal["centroid", "linear"]
STORED_KINDS: tuple[str, ...] = ("centroid", "linear")
HEAD_KINDS: tuple[str, ...] = ("auto", *STORED_KINDS)  # auto: chosen per tenant by cross-validation


@dataclass(frozen=True)
class Head:
    labels: tuple[str, ...]
    weight: np.ndarray  # [C, D] float32
    bias: np.ndarray  # [C] float32
    oos_threshold: float | None = None  # scores below it are out of scope
    kind: HeadKind = "centroid"

    def __post_init__(self) -> None:
        if self.kind not in STORED_KINDS:
            raise ConfigError(f"head kind must be one of {STORED_KINDS}, got {self.kind!r}")
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


# The L2 penalty of the linear head, as scikit-learn's C (inverse strength): the best mean
# accuracy over 1-10 shots on train and valid tasks only (BANKING77 train halves, CLINC150 train
# -> valid; never test), benchmarks/head_regularisation.py; figures in docs/performance.md.
DEFAULT_C = 30.0


def linear_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    oos_threshold: float | None = None,
    c: float = DEFAULT_C,
) -> Head:
    """Multinomial logistic regression on the frozen embeddings (scikit-learn, L-BFGS, L2 with
    inverse strength ``c``): deterministic for the same examples. Score = the softmax
    probability of the best intent."""
    from sklearn.linear_model import LogisticRegression

    names = tuple(sorted(set(labels)))
    if len(labels) != len(embeddings) or not names:
        raise ConfigError(f"{len(embeddings)} embeddings but {len(labels)} labels: a head needs one label per example")
    if len(names) == 1:  # one intent: nothing to separate; every text scores 1 for it
        zero = np.zeros((1, embeddings.shape[1]), np.float32)  # [1, D]
        return Head(names, zero, np.zeros(1, np.float32), oos_threshold, "linear")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[label] for label in labels])  # [N]
    from threadpoolctl import threadpool_limits

    model = LogisticRegression(C=c, max_iter=2000, tol=1e-6)
    # One BLAS thread: the problem is small ([N, D] x [D, C], N < a few thousand), and threads that
    # spin for a busy CPU made each fit several times slower (0.7 s -> 4.8 s, 77 intents x 6 rows).
    with warnings.catch_warnings(), threadpool_limits(1):  # the warning: expected at 1-2 shots
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        model.fit(np.asarray(embeddings, dtype=np.float64), y)  # [N, D] -> coef [C, D] (or [1, D] for 2 classes)
    weight, bias = model.coef_, model.intercept_
    if len(names) == 2:  # binary: sklearn keeps one row; softmax over (-w/2, w/2) gives the same probabilities
        weight = np.stack([-weight[0] / 2, weight[0] / 2])
        bias = np.array([-bias[0] / 2, bias[0] / 2])
    return Head(names, weight.astype(np.float32), bias.astype(np.float32), oos_threshold, "linear")


def fit_head(kind: str, embeddings: np.ndarray, labels: Sequence[str], oos_threshold: float | None = None) -> Head:
    """A head of a stored ``kind`` (``auto`` chooses one: ``prune.heads.choice.fit_choice``)."""
    if kind == "centroid":
        return centroid_head(embeddings, labels, oos_threshold)
    if kind == "linear":
        return linear_head(embeddings, labels, oos_threshold)
    raise ConfigError(f"head kind must be one of {STORED_KINDS} (auto is chosen by fit_choice), got {kind!r}")
