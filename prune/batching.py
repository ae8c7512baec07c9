"""Batches formed by a token budget over length-sorted inputs, so little padding is computed."""

from __future__ import annotations

from collections.abc import Sequence


def token_batches(lengths: Sequence[int], token_budget: int, max_rows: int) -> list[list[int]]:
    """Group input indices into batches whose padded size (rows x longest) fits the budget.

    Inputs are sorted longest first; a row longer than the budget still gets a batch of its own.
    Every index appears in exactly one batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * width > token_budget or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches
