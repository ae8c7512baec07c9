"""Encoder throughput per token budget (rows x padded length per batch), as ratios to one budget.

A batch's activations (the FFN's [rows x length x 4 hidden] above all) grow with the budget;
once they leave the per-core cache every layer waits on memory. This encodes the same BANKING77
test texts with each budget, interleaved in a rotated order, and prints the median ms/row and
the speed relative to ``--baseline``. Run it for the thread counts and dtypes that matter (an
actor runs one single-thread stream per CPU).

    python benchmarks/token_budget.py --threads 1 --repeats 5 --out benchmarks/results/token_budget.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import click
import torch

from jobs.cli.options import csv_ints, prune_option
from prune import Encoder, EncoderOptions
from prune.config import DEFAULT_TOKEN_BUDGET, DTYPE_CHOICES, resolve_dtype
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.search.timing import interleaved_seconds, median_ratios


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR)
@click.option("--rows", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--budgets", default="256,512,1024,2048,4096", show_default=True, callback=csv_ints, help="Comma-separated."
)
@click.option("--baseline", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--prune", default="tuned", show_default=True, callback=prune_option)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Torch threads.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Append a JSON record.")
def main(
    data_dir: Path,
    rows: int,
    repeats: int,
    budgets: tuple[int, ...],
    baseline: int,
    prune: Any,
    dtype: str,
    threads: int,
    out: Path | None,
) -> None:
    dtype = resolve_dtype(dtype)
    sizes = sorted(set(budgets) | {baseline})
    torch.set_num_threads(threads)
    source = load_split(data_dir, "banking77", "test").texts
    texts = [source[i % len(source)] for i in range(rows)]
    encoders = {b: Encoder(None, prune, EncoderOptions(dtype=dtype, token_budget=b)) for b in sizes}
    for encoder in encoders.values():
        encoder.encode(texts[:500])  # warm-up: every batch shape's kernels built once
    times = interleaved_seconds({str(b): (lambda b=b: encoders[b].encode(texts)) for b in sizes}, repeats)
    ratios = median_ratios(times, str(baseline))
    setup = f"prune {prune}, {dtype}, {threads} threads, {rows} rows, {repeats} interleaved repeats, medians"
    click.echo(f"\n{setup}\n")
    click.echo(f"| token budget | ms/row | vs {baseline} |")
    click.echo("|---:|---:|---:|")
    for b in sizes:
        marker = " (default)" if b == DEFAULT_TOKEN_BUDGET else ""
        click.echo(f"| {b}{marker} | {1000 * statistics.median(times[str(b)]) / rows:.3f} | {ratios[str(b)]:.3f}x |")
    if out:
        record = {
            "prune": str(prune) if prune else None,
            "dtype": dtype,
            "threads": threads,
            "rows": rows,
            "repeats": repeats,
            "baseline": baseline,
            "ms_per_row": {b: 1000 * statistics.median(times[str(b)]) / rows for b in sizes},
            "speed_vs_baseline": {b: ratios[str(b)] for b in sizes},
            "seconds": times,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        records = json.loads(out.read_text()) if out.exists() else []
        out.write_text(json.dumps([*records, record], indent=2))
        click.echo(f"appended to {out}", err=True)


if __name__ == "__main__":
    main()
