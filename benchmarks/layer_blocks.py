"""The int8 encoder's layers compiled one graph per layer (shipped) against one graph per run of
layers between the pruning points, with the tuned pruning, on the BANKING77 test texts. The
question: do Inductor's per-graph wrappers and Dynamo's guards (5.5% of a one-thread profile,
docs/performance.md) cost enough to merge the graphs? Both variants share the same quantised
weights; every repeat runs both, in alternating order, and medians are reported.

    .venv/bin/python benchmarks/layer_blocks.py --threads 2 --repeats 7 \
        --out benchmarks/results/layer_blocks_2threads_epyc.json
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import types
import warnings
from pathlib import Path

import click
import torch
from results_io import write_record

from prune import Encoder, EncoderOptions
from prune.bert import COMPILED_ATTENTION_MAX_TOKENS
from prune.int8 import QuantisedLayer, _own_code
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.tuned import PACKAGED_TUNED_FILE, tuned_default


class Block:
    """Consecutive int8 layers as one compiled graph per width class, called as the encoder calls
    a layer: (h [B, T, D], mask [B, T]) -> (h [B, T, D], None)."""

    def __init__(self, layers: list[QuantisedLayer]) -> None:
        self.layers = layers
        self.compiled = torch.compile(_own_code(self._run, id(self)), dynamic=True)

    def _run(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer._int8(h, mask)  # [B, T, D]
        return h

    def __call__(self, h: torch.Tensor, mask: torch.Tensor, need_probs: bool = False) -> tuple[torch.Tensor, None]:
        assert not need_probs, "a block has no fp32 layer for attention-scored pruning"
        with torch._inductor.config.patch(freezing=True):
            return self.compiled(h, mask), None


def as_blocks(encoder: Encoder) -> Encoder:
    """``encoder`` (int8, pruned) with its layers run as two blocks split at the pruning layer: the
    encoder's own ``encode``, with the blocks as its only two layers and the pruning after the first."""
    assert encoder.prune is not None
    layers: list[QuantisedLayer] = list(encoder.bert.layers)  # type: ignore[arg-type]
    cut = encoder.prune.layer
    other = encoder.with_prune(dataclasses.replace(encoder.prune, layer=1))
    other.bert = types.SimpleNamespace(  # type: ignore[assignment]
        embeddings=encoder.bert.embeddings, layers=[Block(layers[:cut]), Block(layers[cut:])]
    )
    return other


@click.command()
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(threads: int, repeats: int, out: Path | None) -> None:
    torch.set_num_threads(threads)
    texts = load_split(DEFAULT_DATA_DIR, "banking77", "test").texts
    encoder = Encoder(prune=tuned_default(PACKAGED_TUNED_FILE), options=EncoderOptions(dtype="int8"))
    blocks = as_blocks(encoder)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        for width in (8, COMPILED_ATTENTION_MAX_TOKENS + 1):
            blocks.encode([" ".join(["word"] * (width - 2))] * 2)
    compile_s = time.perf_counter() - start
    shipped, merged = encoder.encode(texts).embeddings, blocks.encode(texts).embeddings
    cosine = float((shipped * merged).sum(1).min())
    runs = {
        "per layer (shipped)": lambda: encoder.encode(texts),
        "per block": lambda: blocks.encode(texts),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs)[:: 1 if r % 2 == 0 else -1]:
            t = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - t)
        print(r, {name: round(len(texts) / s[-1]) for name, s in seconds.items()}, flush=True)
    utt_s = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    ratio = utt_s["per block"] / utt_s["per layer (shipped)"]
    print(f"utt/s {utt_s}; per block / per layer {ratio:.3f}; min cosine {cosine:.6f}; compiled in {compile_s:.0f} s")
    write_record(
        out,
        {
            "threads": threads,
            "repeats": repeats,
            "texts": len(texts),
            "utt_per_s": utt_s,
            "per_block_over_per_layer": ratio,
            "min_cosine": cosine,
            "block_compile_s": compile_s,
            "seconds": seconds,
        },
    )


if __name__ == "__main__":
    main()
