"""Static int8 encoder layers: PyTorch 2 export quantisation with torchao's X86 Inductor
quantiser, built by AOTInductor (oneDNN int8 kernels: AMX-INT8 or AVX512-VNNI where present).

Each layer is exported as two graphs with a dynamic batch and length: the q/k/v projection, and
the rest after attention. The attention between them has no weights and stays fp32, so that it
can pick its kernel by the row width. Each run of layers between two pruning points is built as
one graph per width class (``prune.int8_store``: kept on disk, loaded without a compiler), so the
token pruning between them is unchanged.
Activation ranges are calibrated when a graph is first built, on texts the caller tokenises (the
encoder uses train texts bundled with this package). Weights are quantised per output channel,
activations per tensor; layer norms, softmax and the pooling stay in fp32.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import cast

import torch
from torch import nn

from prune.errors import ConfigError, Int8Unavailable
from prune.int8_store import MAX_ROWS, MAX_TOKENS, GraphStore, compiler_problem, width_class
from prune.models import Family
from prune.models.bert import Layer
from prune.models.mpnet import unpruned_positions

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


class _Finish(nn.Module):
    """The rest of a layer after attention, (h, ctx) [B, T, D] -> [B, T, D]: the second exported
    graph (the first is the layer's ``qkv``)."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return self.layer.finish(h, ctx)


class QuantisedLayer(nn.Module):
    """A layer as two int8 graphs with the fp32 attention between them; ``QuantisedStack`` compiles
    runs of them. The attention has no weights and picks its kernel by the row width
    (``Layer.attend``), which an exported graph could not: Inductor compiles one graph per branch.
    The fp32 layer answers when attention probabilities are needed (an attention-scored pruning
    layer), so the token ranking does not depend on int8."""

    def __init__(self, float_layer: Layer, project: nn.Module, finish: nn.Module) -> None:
        super().__init__()
        self.float_layer = float_layer
        self.project = project
        self.finish = finish

    def _int8(self, h: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        ctx, _ = self.float_layer.attend(self.project(h), mask, compiled=True, bias=bias)  # [B, T, D]
        return self.finish(h, ctx)  # [B, T, D]

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, need_probs: bool = False, bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eager (the quantised graphs' reference ops, slow): the encoder runs ``QuantisedStack``."""
        if need_probs:
            return self.float_layer(h, mask, need_probs=True, bias=bias)
        return self._int8(h, mask, bias), None


class Layers(nn.Module):
    """Consecutive int8 layers as one module, h [B, T, D], mask [B, T] (and, for a family whose
    attention depends on positions, the tokens' original positions [B, T]) -> [B, T, D]: what one
    graph runs. The position bias is computed inside, once per run. One graph for the layers
    between two pruning points, rather than one per layer, saves a wrapper per layer: 1.04-1.06x at
    two threads (benchmarks/layer_blocks.py)."""

    def __init__(self, layers: list[QuantisedLayer], position_bias: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.position_bias = position_bias

    def forward(self, h: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        bias = None
        if self.position_bias is not None and positions is not None:
            bias = self.position_bias(positions)  # [B, H, T, T]
        for layer in self.layers:
            h = cast(QuantisedLayer, layer)._int8(h, mask, bias)  # [B, T, D]; a ModuleList yields nn.Module
        return h


Calibration = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


class QuantisedStack:
    """The int8 layers, run as ``Bert.run`` runs layers (start, stop, and the last layer's attention
    probabilities on request), one built graph per range and width class asked for
    (``prune.int8_store``). The encoder asks for the ranges between its pruning points, so the
    pruning between them is unchanged. A graph is loaded from the store when it is there; else the
    layers are calibrated (once) and the graph built into the store, which needs a C++ compiler.
    The graphs are shared by every ``Encoder.with_prune`` copy and by the threads of one process."""

    def __init__(self, bert: Family, store: GraphStore, calibration: Calibration) -> None:
        self.bert = bert  # its fp32 layers answer when attention probabilities rank tokens
        self.store = store
        self._calibration = calibration
        self._quantised: list[QuantisedLayer] | None = None  # calibrated on the first build
        self._graphs: dict[tuple[int, int, str], Callable[..., torch.Tensor]] = {}
        self._lock = threading.Lock()
        self.built: list[tuple[int, int, str]] = []  # the graphs this process built (the rest were loaded)

    def __call__(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        need_probs: bool = False,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As the family's ``run``; ``positions`` [B, T] (default: 0..T-1) reach a family that uses them."""
        if need_probs:  # the last layer in fp32, for the token ranking
            h, _ = self(h, mask, start, stop - 1, positions=positions)
            return self.bert.run(h, mask, stop - 1, stop, need_probs=True, positions=positions)
        if start == stop:
            return h, None
        graph = self.graph(start, stop, width_class(h.shape[1]))
        inputs = [h, mask]  # [B, T, D], [B, T]
        if self.bert.uses_positions:
            if positions is None:
                positions = unpruned_positions(h)  # [B, T]
            inputs.append(positions.contiguous())  # a built graph reads its inputs as laid out when built
        if h.shape[0] == 1:  # the graphs take two rows or more: run one as two
            return graph(*(x.repeat(2, *([1] * (x.dim() - 1))) for x in inputs))[:1], None  # [1, T, D]
        return graph(*inputs), None  # [B, T, D]

    def graph(self, start: int, stop: int, width: str) -> Callable[..., torch.Tensor]:
        """The runner of layers [start, stop) for rows of the width class: loaded, or built then loaded."""
        with self._lock:
            if (start, stop, width) not in self._graphs:
                if not self.store.has(start, stop, width):
                    with self.store.lock():  # another process may be building it: wait, then load
                        if not self.store.has(start, stop, width):
                            self._build(start, stop, width)
                self._graphs[start, stop, width] = self.store.load(start, stop, width)
            return self._graphs[start, stop, width]

    def missing(self, graphs: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        return [g for g in graphs if not self.store.has(*g)]

    def quantised_layers(self) -> list[QuantisedLayer]:
        """The calibrated int8 layers in eager form (the quantised reference ops, slow)."""
        if self._quantised is None:
            self._quantised = quantise(self.bert, self._calibration())
        return self._quantised

    def eager(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        need_probs: bool = False,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As ``__call__``, with the calibrated layers in eager form, one at a time: the quantised
        reference ops the built graphs must match (slow; for checks)."""
        layers = self.quantised_layers()
        bias = None
        if self.bert.position_bias is not None:
            if positions is None:
                positions = unpruned_positions(h)  # [B, T]
            bias = self.bert.position_bias(positions)  # [B, H, T, T]
        for i in range(start, stop):
            h, probs = layers[i](h, mask, need_probs=need_probs and i == stop - 1, bias=bias)
        return h, (probs if need_probs and stop > start else None)

    def _build(self, start: int, stop: int, width: str) -> None:
        problem = compiler_problem()
        if problem:
            raise Int8Unavailable(f"int8 layers {start}-{stop} ({width} rows) are not built here and {problem}")
        d = cast(nn.LayerNorm, self.bert.embeddings.norm).normalized_shape[0]
        layers = Layers(self.quantised_layers()[start:stop], self.bert.position_bias)
        self.store.build(layers, start, stop, width, d, positions=self.bert.uses_positions)
        self.built.append((start, stop, width))


def _imports():
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


def quantise_available() -> None:
    """Raises ``Int8Unavailable`` when torchao (the int8 quantiser) cannot be imported."""
    try:
        _imports()
    except ConfigError as exc:
        raise Int8Unavailable(str(exc)) from None


def quantise(bert: Family, calibration: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[QuantisedLayer]:
    """``bert``'s layers as calibrated int8 ones (``bert`` keeps its fp32 layers).

    calibration: batches of (ids [B, T] long, mask [B, T] bool), run through the fp32 model to
    record each layer's activation ranges.
    """
    prepare_pt2e, convert_pt2e, quantizer = _imports()
    # Inductor's own int8 lowering copies a tensor in a way torch warns about, on every build of a
    # graph: not the user's concern
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", module=r"torch\._inductor\.")
    rows, tokens = torch.export.Dim("rows", min=1, max=MAX_ROWS), torch.export.Dim("tokens", min=2, max=MAX_TOKENS)
    dims = {0: rows, 1: tokens}  # of every [B, T, D] input
    d = cast(nn.LayerNorm, bert.embeddings.norm).normalized_shape[0]
    h_example = torch.randn(4, 16, d)  # [B, T, D]
    float_layers = [cast(Layer, layer) for layer in bert.layers]  # a ModuleList yields nn.Module
    projects, finishes = [], []
    with torch.no_grad():
        for layer in float_layers:
            project = torch.export.export(layer.qkv, (h_example,), dynamic_shapes={"input": dims})
            finish = torch.export.export(
                _Finish(layer), (h_example, torch.randn_like(h_example)), dynamic_shapes={"h": dims, "ctx": dims}
            )
            projects.append(prepare_pt2e(project.module(), quantizer))
            finishes.append(prepare_pt2e(finish.module(), quantizer))
        seen = 0
        for ids, mask in calibration:
            h = bert.embeddings(ids)  # [B, T, D]
            bias = None
            if bert.position_bias is not None:  # an unpadded prefix per row: token j at position j
                bias = bert.position_bias(torch.arange(ids.shape[1]).expand(ids.shape[0], -1))  # [B, H, T, T]
            for layer, project, finish in zip(float_layers, projects, finishes, strict=True):
                ctx, _ = layer.attend(project(h), mask, bias=bias)  # [B, T, D]
                h = finish(h, ctx)
            seen += int(mask.sum())
    if seen == 0:
        raise ConfigError("int8 calibration needs at least one text; none was given")
    return [
        QuantisedLayer(layer, convert_pt2e(project), convert_pt2e(finish))
        for layer, project, finish in zip(float_layers, projects, finishes, strict=True)
    ]
