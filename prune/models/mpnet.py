"""MPNet (all-mpnet-base-v2) in the project's own forward: BERT's post-norm layers
(``prune.models.bert.Layer``), no token types, and a relative-position bias added to every
layer's attention scores. The bias is computed from the tokens' *original* positions, so after
pruning the kept tokens keep their distances to each other.

Shapes: B rows, T padded tokens, D hidden size, H heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prune.models.bert import Layer
from prune.models.files import BertConfig

PADDING_IDX = 1  # MPNet's <pad>: absolute positions start after it, at 2
MAX_DISTANCE = 128


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, d)
        self.position = nn.Embedding(config.max_position_embeddings, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids [B, T] -> [B, T, D]; a row's real tokens are a prefix, so token j sits at position j
        positions = torch.arange(ids.shape[1], device=ids.device) + PADDING_IDX + 1  # [T]
        return self.norm(self.word(ids) + self.position(positions)[None])


def position_buckets(positions: torch.Tensor, buckets: int) -> torch.Tensor:
    """The relative-position bucket of every (query, key) pair, as MPNet computes it:
    positions [B, T] (original token positions) -> [B, T, T] int64 in [0, buckets)."""
    relative = positions[:, None, :] - positions[:, :, None]  # [B, Tq, Tk]: key - query
    n = -relative
    half = buckets // 2
    ret = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(MAX_DISTANCE / exact) * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return ret + torch.where(n < exact, n, large)


def unpruned_positions(h: torch.Tensor) -> torch.Tensor:
    """The positions of an unpruned batch, h [B, T, D] -> [B, T]: token j of every row at j."""
    return torch.arange(h.shape[1], device=h.device).expand(h.shape[0], -1)


class PositionBias(nn.Module):
    """The attention bias of every (query, key) pair from their original positions: positions
    [B, T] -> [B, H, T, T] fp32. Its own module, so that an int8 graph computes it inside (one
    table, no layer weights)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.buckets = config.relative_attention_num_buckets
        self.table = nn.Embedding(self.buckets, config.num_attention_heads)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table(position_buckets(positions, self.buckets)).permute(0, 3, 1, 2).float()


class MPNet(nn.Module):
    uses_positions = True  # the attention bias depends on the tokens' original positions

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.position_bias = PositionBias(config)

    def bias(self, positions: torch.Tensor) -> torch.Tensor:
        """positions [B, T] -> the attention bias [B, H, T, T] (fp32)."""
        return self.position_bias(positions)

    def run(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        need_probs: bool = False,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layers ``start`` to ``stop - 1`` (0-based): h [B, T, D] -> [B, T, D], with the last
        layer's attention probabilities [B, H, T, T] if asked for. ``positions`` [B, T] are the
        tokens' original positions (default: 0..T-1, an unpruned batch)."""
        if positions is None:
            positions = unpruned_positions(h)
        bias = self.bias(positions)  # [B, H, T, T], once for the run
        probs = None
        for i in range(start, stop):
            h, probs = self.layers[i](h, mask, need_probs=need_probs and i == stop - 1, bias=bias)
        return h, probs

    def matmul_weights_to(self, dtype: torch.dtype) -> None:
        """Keep the layers' matmul weights in ``dtype`` (bf16: so autocast does not re-cast them per call)."""
        for layer in self.layers:
            for lin in (layer.qkv, layer.attn_out, layer.ffn_in, layer.ffn_out):
                lin.to(dtype)

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load Hugging Face MPNetModel weights (names as in its state dict)."""
        mine: dict[str, torch.Tensor] = {
            "embeddings.word.weight": state["embeddings.word_embeddings.weight"],
            "embeddings.position.weight": state["embeddings.position_embeddings.weight"],
            "embeddings.norm.weight": state["embeddings.LayerNorm.weight"],
            "embeddings.norm.bias": state["embeddings.LayerNorm.bias"],
            "position_bias.table.weight": state["encoder.relative_attention_bias.weight"],
        }
        for i in range(len(self.layers)):
            p, m = f"encoder.layer.{i}.", f"layers.{i}."
            for part in ("weight", "bias"):
                mine[m + "qkv." + part] = torch.cat([state[p + f"attention.attn.{n}.{part}"] for n in "qkv"])
                mine[m + "attn_out." + part] = state[p + "attention.attn.o." + part]
                mine[m + "attn_norm." + part] = state[p + "attention.LayerNorm." + part]
                mine[m + "ffn_in." + part] = state[p + "intermediate.dense." + part]
                mine[m + "ffn_out." + part] = state[p + "output.dense." + part]
                mine[m + "ffn_norm." + part] = state[p + "output.LayerNorm." + part]
        self.load_state_dict(mine, strict=True)
