"""Classification metrics of the eval (the heads fit with scikit-learn; these are computed here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str | None]) -> dict[str, float]:
    """Accuracy and macro / weighted precision, recall and F1 over the true labels' classes.

    A prediction of None (out of scope) counts as wrong. A class never predicted has precision 0.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("no rows to score")
    t = np.array(y_true, dtype=object)
    p = np.array(y_pred, dtype=object)
    classes = sorted(set(y_true))
    prec, rec, f1, support = [], [], [], []
    for c in classes:
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        pc = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        prec.append(pc)
        rec.append(rc)
        f1.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
        support.append(tp + fn)
    w = np.array(support) / np.sum(support)
    return {
        "accuracy": float(np.mean(t == p)),
        "macro_precision": float(np.mean(prec)),
        "macro_recall": float(np.mean(rec)),
        "macro_f1": float(np.mean(f1)),
        "weighted_precision": float(np.dot(w, prec)),
        "weighted_recall": float(np.dot(w, rec)),
        "weighted_f1": float(np.dot(w, f1)),
    }


def oos_metrics(is_oos: Sequence[bool], predicted_oos: Sequence[bool]) -> dict[str, float]:
    """Recall and precision of the out-of-scope class."""
    t = np.asarray(is_oos, dtype=bool)
    p = np.asarray(predicted_oos, dtype=bool)
    tp = float(np.sum(t & p))
    return {
        "oos_recall": tp / float(t.sum()) if t.any() else 0.0,
        "oos_precision": tp / float(p.sum()) if p.any() else 0.0,
    }
