"""The tenant head: scikit-learn's logistic regression, the cross-validated auto choice and the
calibrated out-of-scope threshold, on synthetic embeddings (clusters on the unit sphere)."""

from __future__ import annotations

import numpy as np
import pytest

from prune.heads.choice import (
    FALLBACK_KIND,
    HeldOut,
    choose_head,
    clearly_better,
    cross_validate,
    with_calibrated_threshold,
)
from prune.heads.head import DEFAULT_C, centroid_head, fit_head, linear_head
from prune.heads.thresholds import IN_SCOPE_KEPT, threshold_from


def clusters(per_intent: int, intents: int = 6, spread: float = 0.6, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((intents, 32))
    x = np.concatenate([c + spread * rng.standard_normal((per_intent, 32)) for c in centres])  # [N, 32]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"intent{i}" for i in range(intents) for _ in range(per_intent)]


def test_the_linear_fit_is_deterministic_and_matches_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = clusters(5)
    a, b = linear_head(x, y), linear_head(x, y)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    reference = LogisticRegression(C=DEFAULT_C, max_iter=2000, tol=1e-6).fit(x.astype(np.float64), y)
    probs = a.scores(x)  # [N, C] our softmax over the stored matrix and bias
    assert np.allclose(probs, reference.predict_proba(x), atol=1e-4)


def test_two_intents_keep_the_same_probabilities() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = clusters(4, intents=2)
    reference = LogisticRegression(C=DEFAULT_C, max_iter=2000, tol=1e-6).fit(x.astype(np.float64), y)
    assert np.allclose(linear_head(x, y).scores(x), reference.predict_proba(x), atol=1e-4)


def test_auto_is_deterministic_and_keeps_linear_unless_the_centroid_clearly_wins() -> None:
    x, y = clusters(6)
    first, again = choose_head(x, y), choose_head(x, y)
    assert first.kind == again.kind and first.cv_accuracy == again.cv_accuracy and first.folds == 5
    held = {kind: cross_validate(x, y, kind, 5) for kind in ("centroid", "linear")}
    for kind in ("centroid", "linear"):
        assert first.cv_accuracy[kind] == round(held[kind].accuracy, 4)
    assert first.kind == ("centroid" if clearly_better(held["centroid"], held["linear"]) else "linear")
    assert np.array_equal(first.head.weight, fit_head(first.kind, x, y).weight)


def test_the_centroid_must_win_by_more_than_noise() -> None:
    def held(first: int, last: int, n: int = 400) -> HeldOut:  # right on examples first..last-1
        i = np.arange(n)
        return HeldOut((i >= first) & (i < last), np.zeros(n, np.float32))

    linear = held(0, 300)
    assert not clearly_better(held(0, 300), linear)  # a tie keeps linear
    assert not clearly_better(held(20, 324), linear)  # +1 pt net of 24 wins and 20 losses: noise
    assert clearly_better(held(0, 320), linear)  # +5 pt, never worse: a clear win
    assert not clearly_better(linear, held(0, 320))


def test_one_example_per_intent_works() -> None:
    x, y = clusters(1)
    choice = choose_head(x, y)
    assert choice.kind == FALLBACK_KIND and choice.folds == 0 and choice.cv_accuracy == {}
    pred = choice.head.classify(x)
    assert [choice.head.labels[i] for i in pred.label_index] == y  # each example is its own intent's best
    assert centroid_head(x, y).labels == choice.head.labels


def test_the_threshold_comes_from_the_examples_only() -> None:
    x, y = clusters(6)
    far, _ = clusters(4, intents=1, seed=9)  # out-of-scope examples: another cluster
    choice = choose_head(x, y)
    assert choice.held_out_scores is not None and len(choice.held_out_scores) == len(y)
    alone = with_calibrated_threshold(choice, None).head.oos_threshold
    assert alone == pytest.approx(float(np.quantile(choice.held_out_scores, 1 - IN_SCOPE_KEPT)))
    with_oos = with_calibrated_threshold(choice, far).head.oos_threshold
    assert with_oos == pytest.approx(threshold_from(choice.held_out_scores, choice.head.classify(far).score))
    assert choice.head.classify(far).in_scope.all()  # no threshold before calibration: all in scope
    assert not with_calibrated_threshold(choice, far).head.classify(far).in_scope.any()


def test_auto_threshold_needs_two_examples_per_intent() -> None:
    from prune.errors import BadInput

    x, y = clusters(1)
    with pytest.raises(BadInput, match="at least 2 examples of every intent"):
        with_calibrated_threshold(choose_head(x, y), None)


def test_the_regularisation_search_never_reads_a_test_split(monkeypatch) -> None:
    import prune.search.data
    import prune.search.tune

    read: list[str] = []
    original = prune.search.data.load_split

    def spy(data_dir, dataset, split):  # type: ignore[no-untyped-def]
        read.append(split)
        return original(data_dir, dataset, split)

    monkeypatch.setattr(prune.search.tune, "load_split", spy)
    tasks = prune.search.tune.search_tasks(prune.search.data.DEFAULT_DATA_DIR, ("banking77", "clinc150"), 10)
    assert {t.dataset for t in tasks} == {"banking77", "clinc150"} and set(read) == {"train", "valid"}
