"""Classification metrics of the eval, by scikit-learn (as the tenant eval's)."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.metrics import accuracy_score, precision_recall_fscore_support, precision_score, recall_score

NOT_PREDICTED = "\x00out of scope"  # a prediction of None: wrong for every true class


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str | None]) -> dict[str, float]:
    """Accuracy and macro / weighted precision, recall and F1 over the true labels' classes.

    A prediction of None (out of scope) counts as wrong. A class never predicted has precision 0.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no rows to score")
    predicted = [NOT_PREDICTED if p is None else p for p in y_pred]
    classes = sorted(set(y_true))
    scores = {"accuracy": float(accuracy_score(y_true, predicted))}
    for average in ("macro", "weighted"):
        p, r, f1, _ = precision_recall_fscore_support(
            y_true, predicted, labels=classes, average=average, zero_division=0
        )
        scores.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f1)})
    return scores


def oos_metrics(is_oos: Sequence[bool], predicted_oos: Sequence[bool]) -> dict[str, float]:
    """Recall and precision of the out-of-scope class."""
    truth, predicted = list(map(bool, is_oos)), list(map(bool, predicted_oos))
    return {
        "oos_recall": float(recall_score(truth, predicted, zero_division=0)),
        "oos_precision": float(precision_score(truth, predicted, zero_division=0)),
    }
