"""Choosing the tokens to keep and gathering them into a narrower padded batch."""

from __future__ import annotations

import torch

from prune.config import PruneConfig


def keep_counts(n: torch.Tensor, config: PruneConfig) -> torch.Tensor:
    """Tokens to keep per row: n if n <= s, else max(s, ceil((1 - q) * n)).

    n [B] int64 real-token counts -> [B] int64. A tiny epsilon keeps float noise
    (e.g. (1 - 0.8) * 10 = 2.0000000000000004) from adding a token.
    """
    want = torch.ceil((1.0 - config.quantile) * n.double() - 1e-9).long()
    keep = torch.clamp(want, min=config.min_tokens)
    return torch.where(n <= config.min_tokens, n, torch.minimum(keep, n))


def select(scores: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Positions to keep, ascending, as a ``[B, max(keep)]`` index tensor.

    scores [B, T] (higher = keep), mask [B, T] bool real tokens, keep [B] counts.
    [CLS] (position 0) and [SEP] (last real position) are always kept, padding never is.
    Ties go to the earlier token, so the choice is deterministic. Entries past a row's
    ``keep`` point at kept positions' padding slots and must be masked by the caller.
    """
    b, t = scores.shape
    rows = torch.arange(b, device=scores.device)
    n = mask.sum(1)  # [B]
    s = scores.float().masked_fill(~mask, float("-inf"))
    s[:, 0] = float("inf")
    s[rows, n - 1] = float("inf")
    order = torch.sort(s, dim=1, descending=True, stable=True).indices  # [B, T] by importance
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(t).expand(b, t))
    kept = rank < keep[:, None]  # [B, T] bool
    positions = torch.arange(t).expand(b, t)
    key = torch.where(kept, positions, positions + t)  # kept positions first, in order
    return torch.sort(key, dim=1).indices[:, : int(keep.max())]  # [B, T']


def gather(hidden: torch.Tensor, index: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [B, T, D], index [B, T'] -> (hidden [B, T', D], mask [B, T'])."""
    d = hidden.shape[-1]
    narrow = hidden.gather(1, index[:, :, None].expand(-1, -1, d))
    mask = torch.arange(index.shape[1])[None, :] < keep[:, None]
    return narrow, mask
