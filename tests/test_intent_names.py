"""Intent names as one more example per intent: the text they become, when they count as
informative, and how they enter the fit and the cross-validation. Synthetic clusters on the
unit sphere (the names sit near their intent's centre, or nowhere in particular); the real
encoder's end of it is in test_tenants."""

from __future__ import annotations

import numpy as np
import pytest

from prune.heads.choice import choose_head, clearly_better, cross_validate, fit_choice
from prune.heads.head import fit_head
from prune.heads.intent_names import IntentNames, NameSignal, name_signal, name_text


def clusters(
    per_intent: int, intents: int = 8, seed: int = 0, spread: float = 0.5
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Examples [N, 32], their labels, and the intent centres [C, 32]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((intents, 32))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.concatenate([c + spread * rng.standard_normal((per_intent, 32)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [f"intent{i}" for i in range(intents) for _ in range(per_intent)], centres


def names_near(centres: np.ndarray, noise: float, seed: int = 1) -> IntentNames:
    rng = np.random.default_rng(seed)
    e = centres + noise * rng.standard_normal(centres.shape)
    return IntentNames(tuple(f"intent{i}" for i in range(len(centres))), e.astype(np.float32))


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("card_arrival", "card arrival"),
        ("Refund_not_showing_up", "refund not showing up"),
        ("cardArrival", "card arrival"),
        ("billing.refund-status", "billing refund status"),
        ("  oddly__spaced  ", "oddly spaced"),
        ("HTTPError", "httperror"),
    ],
)
def test_names_become_utterance_like_text(label: str, text: str) -> None:
    assert name_text(label) == text


def test_informative_names_are_used_and_join_the_fit() -> None:
    x, y, centres = clusters(5)
    names = names_near(centres, 0.3)
    assert name_signal(names, x, y).informative
    choice = choose_head(x, y, names=names)
    assert choice.names is not None and choice.names.used
    assert set(choice.names.cv_accuracy) == {"with", "without"}
    xn, yn = names.added_to(x, y)
    assert len(xn) == len(x) + 8 and yn[len(y) :] == list(names.labels)
    assert np.array_equal(choice.head.weight, fit_head(choice.kind, xn, yn).weight)  # the fit of examples + names
    again = choose_head(x, y, names=names)
    assert np.array_equal(again.head.weight, choice.head.weight) and again.names == choice.names


def test_opaque_names_are_ignored() -> None:
    x, y, _ = clusters(5)
    rng = np.random.default_rng(7)
    common = rng.standard_normal(32)  # "intent 1", "intent 2", ...: one text, nearly one embedding
    opaque = IntentNames(tuple(sorted(set(y))), (common + 0.01 * rng.standard_normal((8, 32))).astype(np.float32))
    signal = name_signal(opaque, x, y)
    assert not signal.informative and signal.chance == 0.125
    choice = choose_head(x, y, names=opaque)
    assert choice.names is not None and not choice.names.used
    assert np.array_equal(choice.head.weight, choose_head(x, y).head.weight)  # as if no names were given


def test_names_that_cross_validate_clearly_worse_are_dropped() -> None:
    """Half the names are right and half all name intent 0's cluster: informative by the
    nearest-name test, yet the examples alone cross-validate clearly better."""
    x, y, centres = clusters(10, seed=3, spread=0.2)
    misleading = centres.copy()
    misleading[4:] = centres[0]  # intents 4-7 named like intent 0
    names = IntentNames(tuple(sorted(set(y))), misleading.astype(np.float32))
    assert name_signal(names, x, y).informative
    choice = choose_head(x, y, names=names)
    assert choice.names is not None and not choice.names.used
    assert choice.names.cv_accuracy["with"] < choice.names.cv_accuracy["without"]
    without = cross_validate(x, y, "linear", 5)
    assert clearly_better(without, cross_validate(x, y, "linear", 5, names))
    assert np.array_equal(choice.head.weight, choose_head(x, y).head.weight)


def test_names_are_never_held_out() -> None:
    x, y, centres = clusters(4)
    held = cross_validate(x, y, "linear", 4, names_near(centres, 0.3))
    assert held.correct.shape == (len(y),) and held.scores.shape == (len(y),)


def test_one_example_per_intent_decides_by_the_names_alone() -> None:
    x, y, centres = clusters(1)
    names = names_near(centres, 0.2)
    choice = fit_choice("auto", x, y, names=names)
    assert choice.folds == 0 and choice.names is not None
    assert choice.names.used == name_signal(names, x, y).informative
    assert choice.head.labels == tuple(sorted(set(y)))


def test_mismatched_names_are_refused() -> None:
    with pytest.raises(ValueError, match="2 intent names but 3 embeddings"):
        IntentNames(("a", "b"), np.zeros((3, 4), np.float32))


@pytest.mark.parametrize(
    ("accuracy", "chance", "p_value", "informative"),
    [
        (0.65, 0.013, 1e-70, True),  # descriptive names (BANKING77's: 65%)
        (0.03, 0.0067, 0.003, False),  # names shifted one intent along, among 150: beyond chance, yet wrong
        (0.24, 0.0067, 1e-9, False),  # under a quarter
        (0.80, 0.5, 0.19, False),  # 4 of 5 examples among 2 intents: could be luck
    ],
)
def test_names_must_classify_a_quarter_of_the_examples_beyond_chance(
    accuracy: float, chance: float, p_value: float, informative: bool
) -> None:
    assert NameSignal(accuracy, chance, p_value).informative is informative
