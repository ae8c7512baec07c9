"""Token importance scores for pruning: pluggable, one function per idea.

Every score maps what the pruning layer produced to a ``[B, T]`` tensor, higher = keep.
Padding positions may hold anything: the pruner never selects them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from prune.errors import ConfigError


@dataclass(frozen=True)
class LayerTrace:
    """What layer ``l`` produced: its output and, if asked for, its attention."""

    hidden: torch.Tensor  # [B, T, D] output of layer l
    mask: torch.Tensor  # [B, T] bool, True on real tokens
    probs: torch.Tensor | None  # [B, H, T, T] attention probabilities of layer l


@dataclass(frozen=True)
class ImportanceScore:
    name: str
    needs_attention: bool
    fn: Callable[[LayerTrace], torch.Tensor]
    doc: str

    def __call__(self, trace: LayerTrace) -> torch.Tensor:
        return self.fn(trace)


def attention_received(trace: LayerTrace) -> torch.Tensor:
    """The paper's score: attention a token receives, averaged over heads and real queries."""
    assert trace.probs is not None
    queries = trace.mask.to(trace.probs.dtype)  # [B, T]
    per_head = trace.probs.mean(1)  # [B, T_query, T_key]
    received = (per_head * queries[:, :, None]).sum(1)  # [B, T_key]
    return received / queries.sum(1, keepdim=True)


def hidden_norm(trace: LayerTrace) -> torch.Tensor:
    """L2 norm of the token's hidden state after layer l."""
    return trace.hidden.float().norm(dim=-1)  # [B, T]


SCORES: dict[str, ImportanceScore] = {
    "attention": ImportanceScore(
        "attention",
        True,
        attention_received,
        "attention received in layer l, mean over heads and real query tokens (arXiv 2408.11799)",
    ),
    "norm": ImportanceScore("norm", False, hidden_norm, "L2 norm of the layer-l hidden state"),
}


def get_score(name: str) -> ImportanceScore:
    if name not in SCORES:
        raise ConfigError(f"unknown importance score {name!r}; available: {sorted(SCORES)}")
    return SCORES[name]
