"""Static int8 encoder layers: PyTorch 2 export quantisation with torchao's X86 Inductor
quantiser, compiled by Inductor (oneDNN int8 kernels: AMX-INT8 or AVX512-VNNI where present).

Each layer is exported on its own with a dynamic batch and length, so the token pruning between
layers is unchanged. Activation ranges are calibrated once, when the encoder loads, on texts the
caller tokenises (the encoder uses train texts bundled with this package). Weights are quantised
per output channel, activations per tensor; layer norms, softmax and the pooling stay in fp32.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from prune.bert import Bert, Layer
from prune.errors import ConfigError

MAX_ROWS = 4096  # the exported graphs' dynamic range: rows per batch, tokens per row
MAX_TOKENS = 8192
CALIBRATION_PER_DATASET = 150


def calibration_texts() -> list[str]:
    """Train texts bundled with this package, spread over each set (BANKING77 and CLINC150,
    out-of-scope rows included): short and long utterances of two domains. Never test rows."""
    from prune.datasets import DATASETS_DIR, read_split

    texts: list[str] = []
    for dataset in ("banking77", "clinc150"):
        train, _ = read_split(DATASETS_DIR / dataset / "train.jsonl")
        texts += train[:: max(1, len(train) // CALIBRATION_PER_DATASET)][:CALIBRATION_PER_DATASET]
    return texts


class _HiddenOnly(nn.Module):
    """A layer as a function of (h, mask) -> h, the form that is exported."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.layer(h, mask)[0]  # [B, T, D]


class QuantisedLayer(nn.Module):
    """The int8 graph of a layer; the fp32 layer answers when attention probabilities are needed
    (an attention-scored pruning layer), so the token ranking does not depend on int8."""

    def __init__(self, float_layer: Layer, graph: nn.Module) -> None:
        super().__init__()
        self.float_layer = float_layer
        self.graph = graph

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, need_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if need_probs:
            return self.float_layer(h, mask, need_probs=True)
        # Inductor compiles on the first call of a shape class; freezing (set here, not through
        # torch.compile's options, which do not reach it) lets it pre-pack the int8 weights.
        with torch._inductor.config.patch(freezing=True):
            if h.shape[0] == 1:  # a size Inductor would compile again for: run it as two rows
                return self.graph(h.repeat(2, 1, 1), mask.repeat(2, 1))[:1], None  # [1, T, D]
            return self.graph(h, mask), None  # [B, T, D]


def _imports():  # type: ignore[no-untyped-def]
    # On import, torchao logs that its CUDA-only libraries do not load on this CPU build, and torch
    # logs a deprecation for enums torchao registers: neither is the user's concern
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    except ImportError as exc:
        raise ConfigError(
            f"dtype int8 needs torchao ({exc}); install it with: pip install -c constraints.txt torchao"
        ) from exc
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config())
    return prepare_pt2e, convert_pt2e, quantizer


def quantise(bert: Bert, calibration: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Replace ``bert``'s fp32 layers with calibrated int8 ones, in place.

    calibration: batches of (ids [B, T] long, mask [B, T] bool), run through the fp32 model to
    record each layer's activation ranges.
    """
    prepare_pt2e, convert_pt2e, quantizer = _imports()
    rows, tokens = torch.export.Dim("rows", min=1, max=MAX_ROWS), torch.export.Dim("tokens", min=2, max=MAX_TOKENS)
    shapes = {"h": {0: rows, 1: tokens}, "mask": {0: rows, 1: tokens}}
    d = bert.embeddings.norm.normalized_shape[0]
    example = (torch.randn(4, 16, d), torch.ones(4, 16, dtype=torch.bool))  # h [B, T, D], mask [B, T]
    float_layers = list(bert.layers)
    prepared = []
    with torch.no_grad():
        for layer in float_layers:
            graph = torch.export.export(_HiddenOnly(layer), example, dynamic_shapes=shapes).module()
            prepared.append(prepare_pt2e(graph, quantizer))
        seen = 0
        for ids, mask in calibration:
            h = bert.embeddings(ids)  # [B, T, D]
            for observed in prepared:
                h = observed(h, mask)
            seen += int(mask.sum())
    if seen == 0:
        raise ConfigError("int8 calibration needs at least one text; none was given")
    for i, (layer, observed) in enumerate(zip(float_layers, prepared, strict=True)):
        graph = torch.compile(convert_pt2e(observed), dynamic=True)
        bert.layers[i] = QuantisedLayer(layer, graph)
    _compile_now(bert)


def _compile_now(bert: Bert) -> None:
    """Compile while loading rather than in the first unit. Later calls of any shape reuse
    these graphs (a single row runs as two, see ``QuantisedLayer``)."""
    with torch.inference_mode(), warnings.catch_warnings():
        # Inductor's own int8 lowering copies a tensor in a way torch warns about
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        ids = torch.full((2, 8), 100, dtype=torch.long)  # [B, T]
        mask = torch.ones(2, 8, dtype=torch.bool)  # [B, T]
        h = bert.embeddings(ids)  # [B, T, D]
        for layer in bert.layers:
            h, _ = layer(h, mask)
