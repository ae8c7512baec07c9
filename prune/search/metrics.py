"""Classification metrics, computed from scratch (no sklearn at run time)."""

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


def choose_threshold(in_scope_scores: np.ndarray, oos_scores: np.ndarray) -> float:
    """The score threshold that maximises balanced accuracy on calibration rows.

    Balanced accuracy = mean of (in-scope rows at or above it, out-of-scope rows below it).
    Candidates are midpoints between consecutive distinct scores; ties go to the lower threshold.
    """
    if len(in_scope_scores) == 0 or len(oos_scores) == 0:
        raise ValueError("threshold calibration needs both in-scope and out-of-scope rows")
    values = np.unique(np.concatenate([in_scope_scores, oos_scores]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    ins = np.sort(in_scope_scores)
    oos = np.sort(oos_scores)
    kept_in = 1.0 - np.searchsorted(ins, candidates, side="left") / len(ins)  # in-scope >= t
    caught_oos = np.searchsorted(oos, candidates, side="left") / len(oos)  # oos < t
    return float(candidates[int(np.argmax((kept_in + caught_oos) / 2))])
