"""The project's own BERT forward pass, one layer at a time so tokens can be removed between layers.

Shapes: B rows, T padded tokens, D hidden size, H heads, Dh = D / H.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prune.errors import ModelError
from prune.models.files import BertConfig

# Rows padded to at most this many tokens attend through explicit matmuls; longer ones through
# the fused scaled_dot_product_attention, which wins from there (benchmarks/encoder.py --fused-attention).
EXPLICIT_ATTENTION_MAX_TOKENS = 64
# Under torch.compile (the int8 layers), rows padded to at most this many tokens attend as
# broadcast products and sums, which Inductor fuses into one loop nest with the softmax; longer
# ones through the fused kernel, which from 32 tokens is as fast with one thread or faster.
COMPILED_ATTENTION_MAX_TOKENS = 32

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.word = nn.Embedding(config.vocab_size, d)
        self.position = nn.Embedding(config.max_position_embeddings, d)
        self.token_type = nn.Embedding(config.type_vocab_size, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids [B, T] -> [B, T, D]; single-segment inputs, so token type 0 everywhere
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word(ids) + self.position(positions)[None] + self.token_type.weight[0]
        return self.norm(x)


class Layer(nn.Module):
    """A post-norm BERT layer. Attention probabilities are materialised only on request."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d, self.heads = config.hidden_size, config.num_attention_heads
        if d % self.heads:
            raise ModelError(f"hidden_size {d} is not divisible by num_attention_heads {self.heads}")
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_out = nn.Linear(d, d)
        self.attn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(d, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        act = config.hidden_act
        if act not in _ACTIVATIONS:
            raise ModelError(f"hidden_act {act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
        self.act = _ACTIVATIONS[act]

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, need_probs: bool = False, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # h [B, T, D]; mask [B, T] bool, True on real tokens; bias [B, H, T, T] added to the scores
        ctx, probs = self.attend(self.qkv(h), mask, need_probs, bias=bias)
        return self.finish(h, ctx), probs

    def attend(
        self,
        qkv: torch.Tensor,
        mask: torch.Tensor,
        need_probs: bool = False,
        compiled: bool = False,
        bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention of the projected tokens: qkv [B, T, 3D] -> context [B, T, D] (and the
        probabilities [B, H, T, T] if asked for). No weights: the int8 path runs it between its graphs.
        ``bias`` [B, H, T, T], if given, is added to the scores (MPNet's relative positions).

        compiled: the caller runs this under torch.compile, so short rows take the form Inductor
        fuses (in eager it would materialise [B, H, T, T, Dh]). The kernel is picked by the padded
        width T, so a compiled caller gets one graph per width class."""
        b, t, _ = qkv.shape
        q, k, v = split_heads(qkv, self.heads)  # [B, H, T, Dh] each
        keys = mask[:, None, None, :]  # [B, 1, 1, T]
        probs = None
        if need_probs or (not compiled and t <= EXPLICIT_ATTENTION_MAX_TOKENS):
            # Explicit: in fp32 when the probabilities rank tokens, so the ranking does not depend on
            # the dtype. For short rows, because two small matmuls beat the fused kernel, whose
            # per-(row, head) set-up dominates at a few tokens (benchmarks/encoder.py --fused-attention).
            ctx, weights = matmul_attention(q, k, v, keys, torch.float32 if need_probs else v.dtype, bias)
            probs = weights if need_probs else None
        elif compiled and t <= COMPILED_ATTENTION_MAX_TOKENS:
            ctx = summed_attention(q, k, v, keys, bias)  # [B, H, T, Dh]
        elif bias is not None:
            scores_mask = bias.to(q.dtype).masked_fill(~keys, float("-inf"))  # [B, H, T, T]
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=scores_mask)  # [B, H, T, Dh]
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)  # [B, H, T, Dh]
        return ctx.transpose(1, 2).reshape(b, t, qkv.shape[-1] // 3), probs

    def finish(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """The rest of the layer after attention: h, ctx [B, T, D] -> [B, T, D]."""
        h = self.attn_norm(h + self.attn_out(ctx))
        return self.ffn_norm(h + self.ffn_out(self.act(self.ffn_in(h))))


def split_heads(qkv: torch.Tensor, heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fused projection qkv [B, T, 3D] as q, k, v [B, H, T, Dh] (views, no copy)."""
    b, t, d3 = qkv.shape
    q, k, v = qkv.view(b, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)
    return q, k, v


def matmul_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keys: torch.Tensor,
    dt: torch.dtype,
    bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention as two matmuls and a masked softmax in ``dt``: q, k, v [B, H, T, Dh], keys
    [B, 1, 1, T] bool, bias [B, H, T, T] or None -> context [B, H, T, Dh] (in v's dtype) and
    probabilities [B, H, T, T]."""
    scores = q.to(dt) @ k.to(dt).transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, T, T]
    if bias is not None:
        scores = scores + bias.to(dt)
    weights = scores.masked_fill(~keys, float("-inf")).softmax(-1)  # [B, H, T, T]
    return (weights @ v.to(dt)).to(v.dtype), weights


def summed_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention as broadcast products and sums, normalised after the weighted sum: q, k, v
    [B, H, T, Dh], keys [B, 1, 1, T] bool, bias [B, H, T, T] or None -> [B, H, T, Dh]. Inductor
    fuses it into loops over the few tokens, where bmm and a separate softmax pay a call and a pass
    over [B, H, T, T] each. The heads are the innermost axis of the scores, [B, Tq, Tk, H], so that
    Inductor's vector loops run over the model's fixed number of heads, not over a few tokens (which
    left the exp in scalar tail loops)."""
    scale = 1 / math.sqrt(q.shape[-1])
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [B, T, H, Dh]
    scores = (q[:, :, None] * k[:, None]).sum(-1) * scale  # [B, Tq, Tk, H]
    if bias is not None:
        scores = scores + bias.permute(0, 2, 3, 1).to(scores.dtype)  # [B, H, Tq, Tk] -> [B, Tq, Tk, H]
    scores = scores.masked_fill(~keys[:, :, 0, :, None], float("-inf"))  # every row has a real token
    e = (scores - scores.amax(2, keepdim=True)).exp()  # [B, Tq, Tk, H]
    ctx = (e[..., None] * v[:, None]).sum(2) / e.sum(2)[..., None]  # [B, Tq, H, Dh]
    return ctx.transpose(1, 2)  # [B, H, T, Dh]


class Bert(nn.Module):
    uses_positions = False  # absolute positions only, added by the embeddings
    position_bias: nn.Module | None = None

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def run(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        need_probs: bool = False,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layers ``start`` to ``stop - 1`` (0-based), one at a time: h [B, T, D] -> [B, T, D], with
        the last layer's attention probabilities [B, H, T, T] if asked for. ``positions`` (the
        tokens' original positions, for a family whose attention uses them) is not used by BERT."""
        probs = None
        for i in range(start, stop):
            h, probs = self.layers[i](h, mask, need_probs=need_probs and i == stop - 1)
        return h, probs

    def matmul_weights_to(self, dtype: torch.dtype) -> None:
        """Keep the layers' matmul weights in ``dtype`` (bf16: so autocast does not re-cast them per call)."""
        for layer in self.layers:
            for lin in (layer.qkv, layer.attn_out, layer.ffn_in, layer.ffn_out):
                lin.to(dtype)

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load Hugging Face BertModel weights (names as in its state dict)."""
        mine: dict[str, torch.Tensor] = {
            "embeddings.word.weight": state["embeddings.word_embeddings.weight"],
            "embeddings.position.weight": state["embeddings.position_embeddings.weight"],
            "embeddings.token_type.weight": state["embeddings.token_type_embeddings.weight"],
            "embeddings.norm.weight": state["embeddings.LayerNorm.weight"],
            "embeddings.norm.bias": state["embeddings.LayerNorm.bias"],
        }
        for i in range(len(self.layers)):
            p, m = f"encoder.layer.{i}.", f"layers.{i}."
            for part in ("weight", "bias"):
                mine[m + "qkv." + part] = torch.cat(
                    [state[p + f"attention.self.{n}.{part}"] for n in ("query", "key", "value")]
                )
                mine[m + "attn_out." + part] = state[p + "attention.output.dense." + part]
                mine[m + "attn_norm." + part] = state[p + "attention.output.LayerNorm." + part]
                mine[m + "ffn_in." + part] = state[p + "intermediate.dense." + part]
                mine[m + "ffn_out." + part] = state[p + "output.dense." + part]
                mine[m + "ffn_norm." + part] = state[p + "output.LayerNorm." + part]
        self.load_state_dict(mine, strict=True)
