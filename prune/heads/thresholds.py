"""Out-of-scope thresholds: the score below which an utterance is out of scope, calibrated from
training rows only (a tenant's own examples, or a dataset's train split)."""

from __future__ import annotations

import numpy as np

# With no out-of-scope examples, keep this share of the in-scope examples' held-out scores.
IN_SCOPE_KEPT = 0.95


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


def threshold_from(in_scope_scores: np.ndarray, oos_scores: np.ndarray | None = None) -> float:
    """``choose_threshold`` when there are out-of-scope rows; otherwise the score that keeps
    ``IN_SCOPE_KEPT`` of the in-scope rows (held-out scores, so not the head's own fit)."""
    if oos_scores is not None and len(oos_scores):
        return choose_threshold(in_scope_scores, oos_scores)
    if len(in_scope_scores) == 0:
        raise ValueError("threshold calibration needs in-scope rows")
    return float(np.quantile(in_scope_scores, 1.0 - IN_SCOPE_KEPT))
