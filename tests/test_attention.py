"""Layer.attend: each kernel (explicit matmuls, summed products for compiled short rows, the fused
kernel for long rows) agrees with the fp32 attention probabilities, on the real model's weights,
with padded rows."""

from __future__ import annotations

import pytest
import torch

from prune import Encoder
from prune.models.bert import COMPILED_ATTENTION_MAX_TOKENS, EXPLICIT_ATTENTION_MAX_TOKENS

WIDTHS = [3, 17, COMPILED_ATTENTION_MAX_TOKENS, COMPILED_ATTENTION_MAX_TOKENS + 1]
WIDTHS += [EXPLICIT_ATTENTION_MAX_TOKENS, EXPLICIT_ATTENTION_MAX_TOKENS + 1, 150]


# compiled=True is run eagerly here: the same arithmetic Inductor compiles for the int8 layers
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled-form"])
@pytest.mark.parametrize("width", WIDTHS)
def test_every_attention_kernel_matches_the_probabilities(encoder: Encoder, width: int, compiled: bool) -> None:
    layer = encoder.bert.layers[0]
    gen = torch.Generator().manual_seed(width)
    h = torch.randn(5, width, encoder.dim, generator=gen)  # [B, T, D]
    lengths = torch.tensor([width, width - 1, max(2, width // 2), 2, width])  # [B]
    mask = torch.arange(width)[None, :] < lengths[:, None]  # [B, T]
    with torch.inference_mode():
        qkv = layer.qkv(h)  # [B, T, 3D]
        got, no_probs = layer.attend(qkv, mask, compiled=compiled)
        want, probs = layer.attend(qkv, mask, need_probs=True)
    assert no_probs is None and probs is not None
    assert got.shape == want.shape == (5, width, encoder.dim)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # a row of 2 real tokens gives its padding keys no attention
    assert torch.all(probs[3, :, :, 2:] == 0)
