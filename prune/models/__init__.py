"""The model families the encoder runs, one file each (``bert``: BERT-family sentence encoders
such as all-MiniLM-L6-v2; ``mpnet``: all-mpnet-base-v2), and the reading and checking of a
model's folder (``files``): its config, weights, tokenizer and fingerprint. A new family is a
new file here and a line in ``FAMILIES``: a module with ``embeddings``, ``layers``, ``run`` (a
range of layers, given the tokens' original positions), ``matmul_weights_to`` and
``load_hf_state``, which the encoder and the pruning call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    import torch
    from torch import nn

    from prune.models.files import BertConfig


class Family(Protocol):
    """What the encoder, the pruning and the layer-wise tools call on a model family."""

    uses_positions: bool  # whether ``run`` needs the tokens' original positions (after pruning)
    position_bias: nn.Module | None  # positions [B, T] -> attention bias [B, H, T, T], if it has one
    embeddings: nn.Module  # ids [B, T] -> h [B, T, D]
    layers: nn.ModuleList

    def run(
        self,
        h: torch.Tensor,
        mask: torch.Tensor,
        start: int,
        stop: int,
        need_probs: bool = False,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def matmul_weights_to(self, dtype: torch.dtype) -> None: ...

    def load_hf_state(self, state: dict[str, torch.Tensor]) -> None: ...

    def eval(self) -> nn.Module: ...


# model_type (config.json) -> the module and class of its family; imported on use, so reading a
# model's folder (the job driver) needs no torch
FAMILIES = {"bert": ("prune.models.bert", "Bert"), "mpnet": ("prune.models.mpnet", "MPNet")}
# The families whose static int8 stays close to fp32 (all-MiniLM-L6-v2: within 0.5 pt), so that
# ``--dtype auto`` may pick it for a large job. all-mpnet-base-v2's middle layers have activation
# ranges that per-tensor int8 does not hold (cosine 0.91 to fp32 on BANKING77 test texts,
# docs/performance.md#all-mpnet-base-v2): it runs int8 only when asked for.
INT8_IN_AUTO = frozenset({"bert"})


def build_family(config: BertConfig) -> Family:
    """The family's model for ``config`` (its weights still to load, with ``load_hf_state``)."""
    import importlib

    module, name = FAMILIES[config.model_type]
    return cast(Family, getattr(importlib.import_module(module), name)(config))
