"""Choosing a tenant's head from its own examples: each kind is cross-validated on them
(stratified k-fold, deterministic), the better one is kept, and the held-out scores calibrate
an out-of-scope threshold. Never reads anything but the examples it is given."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prune.errors import ConfigError
from prune.head import STORED_KINDS, Head, fit_head
from prune.thresholds import threshold_from

MAX_FOLDS = 5
# With fewer than 2 examples of some intent there is nothing to cross-validate; this kind was
# the more accurate at 1 shot on the train/valid tasks (benchmarks/head_regularisation.py).
FALLBACK_KIND = "linear"
# Linear is the more accurate kind on every train/valid task from 2 shots up, by 1-4 pt, but at
# 5 examples per intent the cross-validated accuracies of the two differ by noise of 1-2 pt: a
# plain "higher wins" then keeps the centroid on some draws and loses about 2 pt. So the centroid
# is kept only when it wins by this many standard errors of the paired held-out difference.
CLEAR_WIN_SE = 2.0
OOS_LABEL = "oos"  # examples with this label teach the threshold, not an intent


@dataclass(frozen=True)
class HeadChoice:
    head: Head
    kind: str  # what was kept: centroid or linear
    cv_accuracy: dict[str, float] = field(default_factory=dict)  # kind -> held-out accuracy (empty: no CV)
    folds: int = 0  # 0 when an intent has a single example
    held_out_scores: np.ndarray | None = None  # [N] the kept kind's out-of-fold best score per example

    def summary(self) -> dict[str, object]:
        return {"chosen": self.kind, "folds": self.folds, "cv_accuracy": self.cv_accuracy}


@dataclass(frozen=True)
class HeldOut:
    """One kind's out-of-fold results on a tenant's examples."""

    correct: np.ndarray  # [N] bool: the example's intent was the held-out prediction
    scores: np.ndarray  # [N] float32: the held-out best score

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


def cross_validate(embeddings: np.ndarray, labels: Sequence[str], kind: str, folds: int) -> HeldOut:
    """``kind`` fitted on k-1 folds and scored on the k-th, for each fold (deterministic folds)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.array(labels, dtype=object)
    scores = np.zeros(len(labels), np.float32)
    correct = np.zeros(len(labels), bool)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(embeddings, y)
    for train, test in split:
        head = fit_head(kind, embeddings[train], list(y[train]))
        pred = head.classify(embeddings[test])  # [T] best intent per held-out example
        correct[test] = [head.labels[i] == t for i, t in zip(pred.label_index.tolist(), y[test], strict=True)]
        scores[test] = pred.score
    return HeldOut(correct, scores)


def centroid_clearly_better(centroid: HeldOut, linear: HeldOut) -> bool:
    """Whether the centroid beats the linear head on the same held-out examples by more than
    ``CLEAR_WIN_SE`` standard errors of the paired difference (a sign that the tenant's intents
    suit prototypes), rather than by the noise of a few examples."""
    d = centroid.correct.astype(np.float64) - linear.correct  # [N] in {-1, 0, 1}
    return bool(d.mean() > CLEAR_WIN_SE * d.std() / np.sqrt(len(d)))


def folds_for(labels: Sequence[str]) -> int:
    """Stratified folds the examples allow: at most 5, at most the rarest intent's count."""
    counts = Counter(labels)
    return min(MAX_FOLDS, min(counts.values())) if len(counts) > 1 else 0


def one_kind(kind: str, embeddings: np.ndarray, labels: Sequence[str], oos_threshold: float | None) -> HeadChoice:
    """A head of the given kind, with its held-out accuracy and scores when they can be had."""
    head = fit_head(kind, embeddings, labels, oos_threshold)
    folds = folds_for(labels)
    if folds < 2:
        return HeadChoice(head, kind)
    held_out = cross_validate(embeddings, labels, kind, folds)
    return HeadChoice(head, kind, {kind: round(held_out.accuracy, 4)}, folds, held_out.scores)


def choose_head(embeddings: np.ndarray, labels: Sequence[str], oos_threshold: float | None = None) -> HeadChoice:
    """Linear, unless the centroid cross-validates clearly better; fitted on all the examples."""
    folds = folds_for(labels)
    if folds < 2:
        return HeadChoice(fit_head(FALLBACK_KIND, embeddings, labels, oos_threshold), FALLBACK_KIND)
    results = {kind: cross_validate(embeddings, labels, kind, folds) for kind in STORED_KINDS}
    kind = "centroid" if centroid_clearly_better(results["centroid"], results["linear"]) else "linear"
    accuracy = {k: round(r.accuracy, 4) for k, r in results.items()}
    head = fit_head(kind, embeddings, labels, oos_threshold)
    return HeadChoice(head, kind, accuracy, folds, results[kind].scores)


def with_calibrated_threshold(choice: HeadChoice, oos_embeddings: np.ndarray | None) -> HeadChoice:
    """The head with an out-of-scope threshold from the tenant's examples only: the held-out
    scores of its in-scope examples, against its out-of-scope examples' scores if it gave some."""
    if choice.held_out_scores is None:
        raise ConfigError(
            "--oos-threshold auto needs at least 2 examples of every intent (held-out scores to calibrate on); "
            "add examples or give a number"
        )
    oos = choice.head.classify(oos_embeddings).score if oos_embeddings is not None and len(oos_embeddings) else None
    t = threshold_from(choice.held_out_scores, oos)
    head = Head(choice.head.labels, choice.head.weight, choice.head.bias, t, choice.head.kind)
    return HeadChoice(head, choice.kind, choice.cv_accuracy, choice.folds, choice.held_out_scores)
