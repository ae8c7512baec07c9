from __future__ import annotations

import random

from prune.batching import token_batches


def test_every_index_once_sorted_and_within_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(2, 120) for _ in range(500)] + [300]  # one longer than the budget
    batches = token_batches(lengths, token_budget=256, max_rows=16)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 256


def test_empty() -> None:
    assert token_batches([], 100, 10) == []
