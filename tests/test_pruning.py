"""Pruning semantics on hand-built cases: keep counts, [CLS]/[SEP], order, padding."""

from __future__ import annotations

import math

import pytest
import torch

from prune.config import PruneConfig
from prune.pruning import gather, keep_counts, select


def cfg(s: int, q: float) -> PruneConfig:
    return PruneConfig(min_tokens=s, quantile=q, layer=1)


@pytest.mark.parametrize(("s", "q"), [(2, 0.5), (4, 0.3), (15, 0.8), (8, 0.0), (3, 0.99), (5, 0.25)])
def test_keep_count_formula(s: int, q: float) -> None:
    """Every length 2..59 in one batch against exact rational arithmetic."""
    from fractions import Fraction

    n = torch.arange(2, 60)
    got = keep_counts(n, cfg(s, q)).tolist()
    want = [k if k <= s else min(max(s, math.ceil((1 - Fraction(str(q))) * k)), k) for k in n.tolist()]
    assert got == want


def test_keep_count_float_noise() -> None:
    # (1 - 0.8) * 10 == 2.0000000000000004 in floats; the rule says ceil(2) = 2, so max(s=2, 2) = 2
    assert int(keep_counts(torch.tensor([10]), cfg(2, 0.8))[0]) == 2


def test_rows_at_or_below_min_tokens_untouched() -> None:
    n = torch.tensor([3, 5, 6])
    assert keep_counts(n, cfg(6, 0.9)).tolist() == [3, 5, 6]


def test_select_keeps_cls_sep_and_order_and_never_padding() -> None:
    # row 0: 8 real tokens; row 1: 5 real tokens then 3 padding positions with huge scores
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3], dtype=torch.bool)
    scores = torch.tensor(
        [
            [0.0, 0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.0],  # CLS and SEP score lowest
            [0.0, 0.1, 0.5, 0.2, 0.0, 99.0, 99.0, 99.0],  # padding scores highest
        ]
    )
    keep = torch.tensor([5, 3])
    index = select(scores, mask, keep)
    assert index.shape == (2, 5)
    row0 = index[0, :5].tolist()
    assert row0 == [0, 1, 3, 5, 7]  # CLS, top-3 by score (1, 3, 5), SEP; ascending order
    row1 = index[1, :3].tolist()
    assert row1 == [0, 2, 4]  # CLS, best real (2), SEP = last real position 4; never 5..7
    hidden = torch.arange(2 * 8 * 2, dtype=torch.float32).view(2, 8, 2)
    narrow, new_mask = gather(hidden, index, keep)
    assert narrow.shape == (2, 5, 2)
    assert new_mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert torch.equal(narrow[0], hidden[0, [0, 1, 3, 5, 7]])
    assert torch.equal(narrow[1, :3], hidden[1, [0, 2, 4]])


def test_select_ties_go_to_earlier_token() -> None:
    mask = torch.ones(1, 6, dtype=torch.bool)
    index = select(torch.zeros(1, 6), mask, torch.tensor([4]))
    assert index[0].tolist() == [0, 1, 2, 5]


def test_prune_config_parse_and_validation() -> None:
    c = PruneConfig.parse("s=15,q=0.8,l=1")
    assert (c.min_tokens, c.quantile, c.layer, c.score) == (15, 0.8, 1, "attention")
    assert PruneConfig.parse(str(c)) == c
    assert PruneConfig.parse("min_tokens=4, quantile=0.5, layer=2, score=norm").score == "norm"
    for bad in (
        "s=15",
        "s=x,q=0.8,l=1",
        "s=15,q=1.0,l=1",
        "s=1,q=0.5,l=1",
        "s=4,q=0.5,l=0",
        "s=4,q=0.5,l=1,z=3",
        "garbage",
    ):
        with pytest.raises(ValueError):
            PruneConfig.parse(bad)
