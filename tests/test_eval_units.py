"""Sampling, metrics, threshold and the search's selection rule, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from prune.config import PruneConfig
from prune.heads.thresholds import choose_threshold
from prune.search.metrics import classification_metrics, oos_metrics
from prune.search.sampling import after_k, k_shot
from prune.search.tune import Measurement, select, with_drops

LABELS = ["a"] * 6 + ["b"] * 6 + ["c"] * 2 + ["oos"] * 3


def test_sampling_is_deterministic_per_seed_and_nested() -> None:
    assert k_shot(LABELS, 3, seed=7) == k_shot(LABELS, 3, seed=7)
    assert any(k_shot(LABELS, 3, seed=s) != k_shot(LABELS, 3, seed=0) for s in range(1, 5))
    five, two = set(k_shot(LABELS, 5, seed=1)), set(k_shot(LABELS, 2, seed=1))
    assert two <= five
    chosen = k_shot(LABELS, 3, seed=1)
    assert sorted(LABELS[i] for i in chosen) == ["a"] * 3 + ["b"] * 3 + ["c"] * 2  # c has only 2: all of them
    assert all(LABELS[i] != "oos" for i in chosen)
    held = after_k(LABELS, 3, 2, seed=1)
    assert not set(held) & set(k_shot(LABELS, 3, seed=1))
    assert sorted(LABELS[i] for i in held) == ["a", "a", "b", "b"]
    with pytest.raises(ValueError):
        k_shot(LABELS, 0, seed=0)


def test_metrics_hand_made_case() -> None:
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", None, "a"]
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(3 / 6)
    # a: tp 2, fp 1, fn 1 -> p 2/3 r 2/3 f1 2/3 ; b: tp 1 fp 1 fn 1 -> 1/2 1/2 1/2 ; c: 0 0 0
    assert m["macro_precision"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 0) / 6)
    assert m["weighted_recall"] == pytest.approx(m["accuracy"])  # always true for weighted recall
    o = oos_metrics([True, True, False, False], [True, False, True, False])
    assert o == {"oos_recall": 0.5, "oos_precision": 0.5}
    with pytest.raises(ValueError):
        classification_metrics(["a"], [])


def test_threshold_separates_and_balances() -> None:
    t = choose_threshold(np.array([0.8, 0.9, 0.7]), np.array([0.2, 0.3, 0.4]))
    assert 0.4 < t < 0.7
    # overlapping: the threshold maximises the mean of in-scope kept and OOS caught
    ins = np.array([0.5, 0.6, 0.7, 0.8])
    oos = np.array([0.1, 0.55, 0.65])
    t = choose_threshold(ins, oos)
    kept = np.mean(ins >= t)
    caught = np.mean(oos < t)
    for other in np.linspace(0, 1, 101):
        assert (kept + caught) >= np.mean(ins >= other) + np.mean(oos < other) - 1e-9
    with pytest.raises(ValueError):
        choose_threshold(np.array([]), oos)


def m(name: str | None, acc: dict[str, float], kept: float, speed: float | None) -> Measurement:
    cfg = PruneConfig.parse(name) if name else None
    return Measurement(cfg, acc, kept, speed)


def test_selection_rule_speed_mode() -> None:
    base = m(None, {"t1": 0.80, "t2": 0.90}, 1.0, 1.0)
    with_drops(base, base)
    fast_but_bad_on_t2 = with_drops(m("s=4,q=0.5,l=1", {"t1": 0.80, "t2": 0.88}, 0.5, 2.0), base)  # t2 -2 pt
    ok_fast = with_drops(m("s=8,q=0.4,l=2", {"t1": 0.797, "t2": 0.897}, 0.7, 1.4), base)  # -0.3 pt each
    ok_slow = with_drops(m("s=8,q=0.2,l=3", {"t1": 0.80, "t2": 0.90}, 0.9, 1.1), base)
    chosen = select([base, fast_but_bad_on_t2, ok_fast, ok_slow], "speed", max_drop=0.5)
    assert chosen is ok_fast
    assert select([base, fast_but_bad_on_t2, ok_fast], "speed", max_drop=2.5) is fast_but_bad_on_t2
    assert select([base, fast_but_bad_on_t2], "speed", max_drop=0.5) is base  # baseline always feasible
    untimed = with_drops(m("s=8,q=0.6,l=1", {"t1": 0.80, "t2": 0.90}, 0.6, None), base)
    with pytest.raises(ValueError, match="not timed"):
        select([base, untimed], "speed", max_drop=0.5)


def test_selection_rule_budget_mode() -> None:
    base = m(None, {"t1": 0.80}, 1.0, 1.0)
    with_drops(base, base)
    a = with_drops(m("s=4,q=0.5,l=1", {"t1": 0.75}, 0.5, None), base)
    b = with_drops(m("s=8,q=0.4,l=2", {"t1": 0.78}, 0.65, None), base)
    c = with_drops(m("s=8,q=0.2,l=3", {"t1": 0.795}, 0.85, None), base)
    assert select([base, a, b, c], "budget", max_kept=0.7) is b
    assert select([base, a, b, c], "budget", max_kept=0.9) is c
    with pytest.raises(ValueError, match="no config satisfies"):
        select([base, a, b, c], "budget", max_kept=0.3)
    with pytest.raises(ValueError, match="token budget"):
        select([base], "budget")
