from __future__ import annotations

import numpy as np
import pytest

from prune.heads.head import Head, centroid_head


def unit(*v: float) -> np.ndarray:
    a = np.array(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_centroids_are_renormalised_means_and_labels_sorted() -> None:
    emb = np.stack([unit(1, 0), unit(1, 1), unit(0, 1), unit(0, 2)])
    head = centroid_head(emb, ["b", "b", "a", "a"])
    assert head.labels == ("a", "b")
    assert np.allclose(head.weight[0], unit(0, 1))
    assert np.allclose(head.weight[1], unit(1 + 2**-0.5, 2**-0.5))
    assert np.allclose(np.linalg.norm(head.weight, axis=1), 1.0)


def test_classify_score_margin_threshold() -> None:
    head = Head(("x", "y", "z"), np.eye(3, dtype=np.float32), np.zeros(3, np.float32), oos_threshold=0.5)
    emb = np.array([[0.9, 0.3, 0.1], [0.2, 0.3, 0.4]], dtype=np.float32)
    pred = head.classify(emb)
    assert pred.label_index.tolist() == [0, 2]
    assert np.allclose(pred.score, [0.9, 0.4])
    assert np.allclose(pred.margin, [0.6, 0.1])
    assert pred.in_scope.tolist() == [True, False]
    assert head.label_of(pred) == ["x", None]


def test_single_label_head() -> None:
    head = centroid_head(np.stack([unit(1, 0)]), ["only"])
    pred = head.classify(np.stack([unit(1, 1)]))
    assert head.label_of(pred) == ["only"] and np.isinf(pred.margin[0])


def test_bad_shapes() -> None:
    with pytest.raises(ValueError):
        centroid_head(np.zeros((2, 3), np.float32), ["a"])
    with pytest.raises(ValueError):
        centroid_head(np.zeros((0, 3), np.float32), [])
    head = centroid_head(np.stack([unit(1, 0)]), ["a"])
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        head.classify(np.zeros((1, 3), np.float32))
