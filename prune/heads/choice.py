"""Choosing a tenant's head from its own examples: each kind is cross-validated on them
(stratified k-fold, deterministic), the better one is kept, and the held-out scores calibrate
an out-of-scope threshold. The intent names, when given and informative, join the examples as
one more example per intent (always on the fitting side of a fold, never held out). Never reads
anything but the examples and names it is given."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from prune.errors import ConfigError
from prune.heads.head import STORED_KINDS, Head, fit_head
from prune.heads.intent_names import IntentNames, NameSignal, name_signal
from prune.heads.thresholds import threshold_from

MAX_FOLDS = 5
# With fewer than 2 examples of some intent there is nothing to cross-validate; this kind was
# the more accurate at 1 shot on the train/valid tasks (benchmarks/head_regularisation.py).
FALLBACK_KIND = "linear"
# Linear is the more accurate kind on every train/valid task from 2 shots up, by 1-4 pt, but at
# 5 examples per intent the cross-validated accuracies of the two differ by noise of 1-2 pt: a
# plain "higher wins" then keeps the centroid on some draws and loses about 2 pt. So the centroid
# is kept only when it wins by this many standard errors of the paired held-out difference.
CLEAR_WIN_SE = 2.0


@dataclass(frozen=True)
class HeldOut:
    """One kind's out-of-fold results on a tenant's examples."""

    correct: np.ndarray  # [N] bool: the example's intent was the held-out prediction
    scores: np.ndarray  # [N] float32: the held-out best score

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


@dataclass(frozen=True)
class NamesDecision:
    """Whether the intent names joined the examples, and the evidence for it."""

    used: bool
    signal: NameSignal
    cv_accuracy: dict[str, float] = field(default_factory=dict)  # "with"/"without" names (empty: no CV)

    def summary(self) -> dict[str, object]:
        return {
            "used": self.used,
            "nearest_name_accuracy": self.signal.accuracy,
            "chance": self.signal.chance,
            "cv_accuracy": self.cv_accuracy,
        }


@dataclass(frozen=True)
class HeadChoice:
    head: Head
    kind: str  # what was kept: centroid or linear
    cv_accuracy: dict[str, float] = field(default_factory=dict)  # kind -> held-out accuracy (empty: no CV)
    folds: int = 0  # 0 when an intent has a single example
    held_out_scores: np.ndarray | None = None  # [N] the kept kind's out-of-fold best score per example
    names: NamesDecision | None = None  # None: no intent names were given

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {"chosen": self.kind, "folds": self.folds, "cv_accuracy": self.cv_accuracy}
        if self.names is not None:
            out["intent_names"] = self.names.summary()
        return out


def _fit(
    kind: str, embeddings: np.ndarray, labels: Sequence[str], names: IntentNames | None, oos: float | None = None
) -> Head:
    if names is None:
        return fit_head(kind, embeddings, labels, oos)
    return fit_head(kind, *names.added_to(embeddings, labels), oos)


def cross_validate(
    embeddings: np.ndarray, labels: Sequence[str], kind: str, folds: int, names: IntentNames | None = None
) -> HeldOut:
    """``kind`` fitted on k-1 folds (plus the names, if given) and scored on the k-th, for each
    fold (deterministic folds)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.array(labels, dtype=object)
    scores = np.zeros(len(labels), np.float32)
    correct = np.zeros(len(labels), bool)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(embeddings, y)
    for train, test in split:
        head = _fit(kind, embeddings[train], list(y[train]), names)
        pred = head.classify(embeddings[test])  # [T] best intent per held-out example
        correct[test] = [head.labels[i] == t for i, t in zip(pred.label_index.tolist(), y[test], strict=True)]
        scores[test] = pred.score
    return HeldOut(correct, scores)


def clearly_better(a: HeldOut, b: HeldOut) -> bool:
    """Whether ``a`` beats ``b`` on the same held-out examples by more than ``CLEAR_WIN_SE``
    standard errors of the paired difference, rather than by the noise of a few examples (for
    the centroid against the linear head: a sign that the tenant's intents suit prototypes)."""
    d = a.correct.astype(np.float64) - b.correct  # [N] in {-1, 0, 1}
    return bool(d.mean() > CLEAR_WIN_SE * d.std() / np.sqrt(len(d)))


def folds_for(labels: Sequence[str]) -> int:
    """Stratified folds the examples allow: at most 5, at most the rarest intent's count."""
    counts = Counter(labels)
    return min(MAX_FOLDS, min(counts.values())) if len(counts) > 1 else 0


def decide_names(
    names: IntentNames, embeddings: np.ndarray, labels: Sequence[str], kind: str
) -> tuple[NamesDecision, HeldOut | None]:
    """Use the names if they classify the examples above chance and, where the examples can be
    cross-validated, ``kind`` without them does not clearly beat ``kind`` with them. Returns
    the decision and ``kind``'s held-out results under it (None without cross-validation)."""
    signal = name_signal(names, embeddings, labels)
    folds = folds_for(labels)
    if folds < 2:
        return NamesDecision(signal.informative, signal), None
    without = cross_validate(embeddings, labels, kind, folds)
    if not signal.informative:
        return NamesDecision(False, signal), without
    with_names = cross_validate(embeddings, labels, kind, folds, names)
    used = not clearly_better(without, with_names)
    cv = {"with": round(with_names.accuracy, 4), "without": round(without.accuracy, 4)}
    return NamesDecision(used, signal, cv), with_names if used else without


def one_kind(
    kind: str,
    embeddings: np.ndarray,
    labels: Sequence[str],
    oos_threshold: float | None,
    names: IntentNames | None = None,
) -> HeadChoice:
    """A head of the given kind, with its held-out accuracy and scores when they can be had."""
    decision, held_out = decide_names(names, embeddings, labels, kind) if names is not None else (None, None)
    used = names if decision is not None and decision.used else None
    head = _fit(kind, embeddings, labels, used, oos_threshold)
    folds = folds_for(labels)
    if folds < 2:
        return HeadChoice(head, kind, names=decision)
    held_out = held_out or cross_validate(embeddings, labels, kind, folds, used)
    return HeadChoice(head, kind, {kind: round(held_out.accuracy, 4)}, folds, held_out.scores, decision)


def choose_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    oos_threshold: float | None = None,
    names: IntentNames | None = None,
) -> HeadChoice:
    """Linear, unless the centroid cross-validates clearly better; fitted on all the examples
    (plus the names, when they are given and informative)."""
    results: dict[str, HeldOut] = {}
    decision = None
    if names is not None:
        decision, linear = decide_names(names, embeddings, labels, "linear")
        results = {"linear": linear} if linear is not None else {}
    used = names if decision is not None and decision.used else None
    folds = folds_for(labels)
    if folds < 2:
        head = _fit(FALLBACK_KIND, embeddings, labels, used, oos_threshold)
        return HeadChoice(head, FALLBACK_KIND, names=decision)
    for kind in STORED_KINDS:
        results.setdefault(kind, cross_validate(embeddings, labels, kind, folds, used))
    kind = "centroid" if clearly_better(results["centroid"], results["linear"]) else "linear"
    accuracy = {k: round(results[k].accuracy, 4) for k in STORED_KINDS}
    head = _fit(kind, embeddings, labels, used, oos_threshold)
    return HeadChoice(head, kind, accuracy, folds, results[kind].scores, decision)


def fit_choice(
    kind: str,
    embeddings: np.ndarray,
    labels: Sequence[str],
    oos_threshold: float | None = None,
    names: IntentNames | None = None,
    held_out: bool = False,
) -> HeadChoice:
    """The head a tenant gets: ``auto`` chooses the kind; a named kind is fitted directly, and
    cross-validated only when the names must be decided or the held-out scores are wanted."""
    if kind == "auto":
        return choose_head(embeddings, labels, oos_threshold, names)
    if held_out or names is not None:
        return one_kind(kind, embeddings, labels, oos_threshold, names)
    return HeadChoice(fit_head(kind, embeddings, labels, oos_threshold), kind)


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
    return replace(choice, head=head)
