"""Static int8 encoder layers: PyTorch 2 export quantisation with torchao's X86 Inductor
quantiser, compiled by Inductor (oneDNN int8 kernels: AMX-INT8 or AVX512-VNNI where present).

Each layer is exported as two graphs with a dynamic batch and length: the q/k/v projection, and
the rest after attention. The attention between them has no weights and stays fp32, outside the
exported graphs, so that it can pick its kernel by the row width. Inductor compiles each run of
layers between two pruning points as one graph (per width class), so the token pruning between
them is unchanged.
Activation ranges are calibrated once, when the encoder loads, on texts the caller tokenises (the
encoder uses train texts bundled with this package). Weights are quantised per output channel,
activations per tensor; layer norms, softmax and the pooling stay in fp32.
"""

from __future__ import annotations

import logging
import threading
import types
import warnings
from collections.abc import Callable, Iterable

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

    def _int8(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx, _ = self.float_layer.attend(self.project(h), mask, compiled=True)  # [B, T, D]
        return self.finish(h, ctx)  # [B, T, D]

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, need_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eager (the quantised graphs' reference ops, slow): the encoder runs ``QuantisedStack``."""
        if need_probs:
            return self.float_layer(h, mask, need_probs=True)
        return self._int8(h, mask), None


class Block:
    """Consecutive int8 layers compiled as one graph per width class: h [B, T, D], mask [B, T] ->
    [B, T, D]. One graph for the layers between two pruning points, rather than one per layer,
    saves Inductor's per-graph wrapper and Dynamo's guards: 1.04-1.06x at two threads
    (benchmarks/layer_blocks.py)."""

    def __init__(self, layers: list[QuantisedLayer]) -> None:
        self.layers = layers
        self.compiled = torch.compile(_own_code(self._run, id(self)), dynamic=True)

    def _run(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer._int8(h, mask)  # [B, T, D]
        return h

    def __call__(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Inductor compiles on the first call of a shape class; freezing (set here, not through
        # torch.compile's options, which do not reach it) lets it pre-pack the int8 weights.
        with torch._inductor.config.patch(freezing=True):
            if h.shape[0] == 1:  # a size Inductor would compile again for: run it as two rows
                return self.compiled(h.repeat(2, 1, 1), mask.repeat(2, 1))[:1]  # [1, T, D]
            return self.compiled(h, mask)  # [B, T, D]


class QuantisedStack:
    """The int8 layers, run as ``Bert.run`` runs layers (start, stop, and the last layer's attention
    probabilities on request), one compiled ``Block`` per range asked for. The encoder asks for
    the ranges between its pruning points, so the pruning between them is unchanged. A range
    first asked for compiles then (``compile_now`` does it while loading); the blocks are shared by
    every ``Encoder.with_prune`` copy and by the threads of one process."""

    def __init__(self, layers: list[QuantisedLayer]) -> None:
        self.layers = layers
        self._blocks: dict[tuple[int, int], Block] = {}
        self._lock = threading.Lock()

    def __call__(
        self, h: torch.Tensor, mask: torch.Tensor, start: int, stop: int, need_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if need_probs:  # the last layer in fp32, for the token ranking
            h, _ = self(h, mask, start, stop - 1)
            return self.layers[stop - 1](h, mask, need_probs=True)
        if start == stop:
            return h, None
        return self._block(start, stop)(h, mask), None  # [B, T, D]

    def _block(self, start: int, stop: int) -> Block:
        with self._lock:
            if (start, stop) not in self._blocks:
                self._blocks[start, stop] = Block(self.layers[start:stop])
            return self._blocks[start, stop]

    def compile_now(self, embeddings: nn.Module, graphs: Iterable[tuple[int, int, int]]) -> None:
        """Compile while loading rather than in the first unit: each (start, stop, width) graph, the
        width picking ``Layer.attend``'s short-row or long-row branch. Later calls of any shape in
        the same branch reuse it (a single row runs as two, see ``Block``); a graph not compiled
        here compiles when first asked for."""
        with torch.inference_mode():
            for start, stop, width in graphs:
                ids = torch.full((2, width), 100, dtype=torch.long)  # [B, T]
                mask = torch.ones(2, width, dtype=torch.bool)  # [B, T]
                self(embeddings(ids), mask, start, stop)  # [B, T, D] -> [B, T, D]


def _own_code(method: Callable[..., torch.Tensor], key: int) -> Callable[..., torch.Tensor]:
    """``method`` with a code object of its own. Dynamo keeps its compiled graphs per code object,
    with a limit of 8: six layers sharing one ``_int8``, each with a short and a long branch, would
    pass it and fall back to eager."""
    fn = method.__func__  # type: ignore[attr-defined]
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{key}")
    return types.MethodType(types.FunctionType(code, fn.__globals__, code.co_name), method.__self__)  # type: ignore[attr-defined]


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


def quantise(bert: Bert, calibration: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> QuantisedStack:
    """Replace ``bert``'s fp32 layers with calibrated int8 ones, in place, and return them as a
    stack to run (not compiled yet: ``QuantisedStack.compile_now``).

    calibration: batches of (ids [B, T] long, mask [B, T] bool), run through the fp32 model to
    record each layer's activation ranges.
    """
    prepare_pt2e, convert_pt2e, quantizer = _imports()
    # Inductor's own int8 lowering copies a tensor in a way torch warns about, on every compile of
    # a block (while loading, and for a range first asked for later): not the user's concern
    warnings.filterwarnings("ignore", message="To copy construct from a tensor", module=r"torch\._inductor\.")
    rows, tokens = torch.export.Dim("rows", min=1, max=MAX_ROWS), torch.export.Dim("tokens", min=2, max=MAX_TOKENS)
    dims = {0: rows, 1: tokens}  # of every [B, T, D] input
    d = bert.embeddings.norm.normalized_shape[0]
    h_example = torch.randn(4, 16, d)  # [B, T, D]
    float_layers = list(bert.layers)
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
            for layer, project, finish in zip(float_layers, projects, finishes, strict=True):
                ctx, _ = layer.attend(project(h), mask)  # [B, T, D]
                h = finish(h, ctx)
            seen += int(mask.sum())
    if seen == 0:
        raise ConfigError("int8 calibration needs at least one text; none was given")
    for i, layer in enumerate(float_layers):
        bert.layers[i] = QuantisedLayer(layer, convert_pt2e(projects[i]), convert_pt2e(finishes[i]))
    return QuantisedStack(list(bert.layers))  # type: ignore[arg-type]
