"""The int8 encoder's layers compiled one graph per run of layers between the pruning points
(shipped: ``prune.int8.QuantisedStack``) against one graph per layer (shipped before 2026-12-06),
with the tuned pruning, on the BANKING77 test texts. The question: do Inductor's per-graph
wrappers and Dynamo's guards (5.5% of a one-thread profile, docs/performance.md) cost enough to
merge the graphs? Both variants share the same quantised weights (the per-layer one asks the same
stack for single-layer ranges); every repeat runs both, in alternating order, and medians are
reported.

    .venv/bin/python benchmarks/layer_blocks.py --threads 2 --repeats 7 \
        --out benchmarks/results/layer_blocks_2threads_epyc.json
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from pathlib import Path

import click
import torch
from results_io import write_record

from prune import Encoder, EncoderOptions
from prune.config import PACKAGED_TUNED_FILE, PruneConfig
from prune.int8 import QuantisedStack
from prune.models.bert import COMPILED_ATTENTION_MAX_TOKENS
from prune.search.data import DEFAULT_DATA_DIR, load_split


class PerLayer:
    """``stack`` asked for one layer at a time: one compiled graph per layer and width class."""

    def __init__(self, stack: QuantisedStack) -> None:
        self.stack = stack

    def __call__(
        self, h: torch.Tensor, mask: torch.Tensor, start: int, stop: int, need_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        probs = None
        for i in range(start, stop):
            h, probs = self.stack(h, mask, i, i + 1, need_probs=need_probs and i == stop - 1)  # [B, T, D]
        return h, probs


def per_layer(encoder: Encoder) -> Encoder:
    """``encoder`` (int8) with its layers run one compiled graph per layer, the same weights."""
    assert encoder._stack is not None
    other = copy.copy(encoder)
    other._stack = PerLayer(encoder._stack)  # type: ignore[assignment]
    return other


@click.command()
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(threads: int, repeats: int, out: Path | None) -> None:
    torch.set_num_threads(threads)
    texts = load_split(DEFAULT_DATA_DIR, "banking77", "test").texts
    packaged = PruneConfig(**json.loads(PACKAGED_TUNED_FILE.read_text())["config"])  # not the user's own
    encoder = Encoder(prune=packaged, options=EncoderOptions(dtype="int8"))
    layers = per_layer(encoder)
    start = time.perf_counter()
    for width in (8, COMPILED_ATTENTION_MAX_TOKENS + 1):
        layers.encode([" ".join(["word"] * (width - 2))] * 2)
    compile_s = time.perf_counter() - start
    shipped, single = encoder.encode(texts).embeddings, layers.encode(texts).embeddings
    cosine = float((shipped * single).sum(1).min())
    runs = {
        "per layer": lambda: layers.encode(texts),
        "per block (shipped)": lambda: encoder.encode(texts),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs)[:: 1 if r % 2 == 0 else -1]:
            t = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - t)
        print(r, {name: round(len(texts) / s[-1]) for name, s in seconds.items()}, flush=True)
    utt_s = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    ratio = utt_s["per block (shipped)"] / utt_s["per layer"]
    print(f"utt/s {utt_s}; per block / per layer {ratio:.3f}; min cosine {cosine:.6f}")
    print(f"the per-layer graphs compiled in {compile_s:.0f} s")
    write_record(
        out,
        {
            "threads": threads,
            "repeats": repeats,
            "texts": len(texts),
            "utt_per_s": utt_s,
            "per_block_over_per_layer": ratio,
            "min_cosine": cosine,
            "per_layer_compile_s": compile_s,
            "seconds": seconds,
        },
    )


if __name__ == "__main__":
    main()
