"""int8's cold and warm load, its throughput as built graphs (AOTInductor packages, shipped)
against the same layers compiled in process by torch.compile (shipped before), and where int8
pays against bf16 in a job's actor.

- Load: a fresh process loads the encoder (int8 with the tuned pruning) and encodes one batch,
  first with an empty graph store (cold: calibrate, export, build) and then again (warm: load the
  packages), then bf16 as the reference. Seconds to the first encoded batch, import included.
- Throughput: one process holds the int8 encoder with its built graphs, the same calibrated
  layers compiled by torch.compile (freezing, dynamic shapes: the former ``Block``), and bf16,
  all with the tuned pruning; each repeat encodes the BANKING77 test texts with each, in rotating
  order; medians are reported.
- Break-even: the rows an actor stream must encode before int8's extra load is paid back,
  (int8 load - bf16 load) / (1 / bf16 rate - 1 / int8 rate), warm and cold.

    python benchmarks/int8_load.py --threads 1 --repeats 11 --out benchmarks/results/int8_load_1thread_epyc.json
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import torch
from results_io import write_record

from prune import Encoder, EncoderOptions
from prune.config import tuned_default
from prune.int8 import Layers, QuantisedStack
from prune.search.data import DEFAULT_DATA_DIR, load_split

LOAD = """
import sys, time
started = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[2]))
from prune import Encoder, EncoderOptions
from prune.config import tuned_default
encoder = Encoder(None, tuned_default(), EncoderOptions(dtype=sys.argv[1]))
encoder.encode(["where is my card", "how do I top up my account with a card from abroad please"])
print(time.perf_counter() - started)
"""


def load_seconds(dtype: str, threads: int, store: str) -> float:
    env = {**os.environ, "JOBS_INT8_CACHE": store}
    out = subprocess.run([sys.executable, "-c", LOAD, dtype, str(threads)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


class Compiled:
    """The former path: the calibrated layers of ``stack`` compiled in process by torch.compile,
    one graph per range, the width class picking the attention branch."""

    def __init__(self, stack: QuantisedStack) -> None:
        self.stack = stack
        self.graphs: dict[tuple[int, int], torch.nn.Module] = {}

    def __call__(
        self, h: torch.Tensor, mask: torch.Tensor, start: int, stop: int, need_probs: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if need_probs:
            h, _ = self(h, mask, start, stop - 1)
            return self.stack.bert.layers[stop - 1](h, mask, need_probs=True)
        if start == stop:
            return h, None
        if (start, stop) not in self.graphs:
            module = Layers(self.stack.quantised_layers()[start:stop])
            self.graphs[start, stop] = torch.compile(module, dynamic=True)
        with torch._inductor.config.patch(freezing=True):
            if h.shape[0] == 1:
                return self.graphs[start, stop](h.repeat(2, 1, 1), mask.repeat(2, 1))[:1], None
            return self.graphs[start, stop](h, mask), None


def encode_seconds(encoder: Encoder, texts: list[str]) -> float:
    started = time.perf_counter()
    encoder.encode(texts)
    return time.perf_counter() - started


@click.command()
@click.option("--threads", type=int, default=1, show_default=True, help="1: an actor's encode stream.")
@click.option("--repeats", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(threads: int, repeats: int, out: Path | None) -> None:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as store:
        cold = load_seconds("int8", threads, store)
        warm = [load_seconds("int8", threads, store) for _ in range(3)]
        bf16_load = [load_seconds("bfloat16", threads, store) for _ in range(3)]
        os.environ["JOBS_INT8_CACHE"] = store
        int8 = Encoder(None, tuned_default(), EncoderOptions(dtype="int8"))
        assert int8._stack is not None and int8._stack.built == []  # loaded, not built
        compiled = Encoder(None, tuned_default(), EncoderOptions(dtype="int8"))
        compiled._stack = Compiled(compiled._stack)  # type: ignore[arg-type,assignment]
        bf16 = Encoder(None, tuned_default(), EncoderOptions(dtype="bfloat16"))
        texts = load_split(DEFAULT_DATA_DIR, "banking77", "test").texts
        variants = {"int8 built graphs": int8, "int8 torch.compile": compiled, "bf16": bf16}
        for encoder in variants.values():  # warm-up: the torch.compile graphs compile here
            encoder.encode(texts[:600])
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(repeats):
            names = list(variants)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(encode_seconds(variants[name], texts))
    rate = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    record = {
        "command": " ".join(["benchmarks/int8_load.py", *sys.argv[1:]]),
        "threads": threads,
        "repeats": repeats,
        "texts": len(texts),
        "load_s": {"int8 cold": cold, "int8 warm": statistics.median(warm), "bf16": statistics.median(bf16_load)},
        "load_s_all": {"int8 warm": warm, "bf16": bf16_load},
        "utt_per_s": rate,
        "ratio_built_vs_compile": rate["int8 built graphs"] / rate["int8 torch.compile"],
        "ratio_int8_vs_bf16": rate["int8 built graphs"] / rate["bf16"],
        "break_even_rows": {},
    }
    per_row_gain = 1 / rate["bf16"] - 1 / rate["int8 built graphs"]
    for kind in ("int8 warm", "int8 cold"):
        extra = record["load_s"][kind] - record["load_s"]["bf16"]
        record["break_even_rows"][kind] = round(extra / per_row_gain) if per_row_gain > 0 else None
    for key in ("load_s", "utt_per_s", "break_even_rows"):
        print(key, {k: round(v, 2) if isinstance(v, float) else v for k, v in record[key].items()})
    built, ratio = record["ratio_built_vs_compile"], record["ratio_int8_vs_bf16"]
    print(f"built graphs / torch.compile: {built:.3f}x; int8 / bf16: {ratio:.2f}x")
    write_record(out, record)


if __name__ == "__main__":
    main()
