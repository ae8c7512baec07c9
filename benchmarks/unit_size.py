"""How the job's unit size costs encoder throughput, as ratios against one encode of all rows.

The encoder sorts the rows of each call by length and batches them under a token budget, so a
unit's rows are padded only against each other: small units pad more. This encodes the same
replicated BANKING77 test texts once whole and in chunks of each unit size, interleaved in a
rotated order, and prints the median time and rows/s of each relative to whole.

    python benchmarks/unit_size.py --rows 24000 --repeats 5 --sizes 1000,2000,5000
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import click
import torch

from jobs.cli.options import csv_ints, prune_option
from prune import Encoder, EncoderOptions
from prune.search.data import DEFAULT_DATA_DIR, load_split
from prune.search.timing import interleaved_seconds, median_ratios


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR)
@click.option("--rows", type=click.IntRange(min=1), default=24000, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option(
    "--sizes", default="1000,2000,5000", show_default=True, callback=csv_ints, help="Comma-separated unit sizes."
)
@click.option("--prune", default="tuned", show_default=True, callback=prune_option)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="bfloat16", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Torch threads (default: every core).")
def main(
    data_dir: Path, rows: int, repeats: int, sizes: tuple[int, ...], prune: Any, dtype: str, threads: int | None
) -> None:
    if threads:
        torch.set_num_threads(threads)
    source = load_split(data_dir, "banking77", "test").texts
    texts = [source[i % len(source)] for i in range(rows)]
    encoder = Encoder(None, prune, EncoderOptions(dtype=dtype))  # type: ignore[arg-type]
    encoder.encode(texts[:2000])  # warm-up

    def run(size: int) -> None:
        for i in range(0, rows, size):
            encoder.encode(texts[i : i + size])

    variants = [rows, *sizes]
    times = interleaved_seconds({str(size): (lambda size=size: run(size)) for size in variants}, repeats)
    ratios = median_ratios(times, str(rows))
    setup = f"prune {prune}, {dtype}, {torch.get_num_threads()} threads"
    click.echo(f"\n{rows} rows, {repeats} interleaved repeats, medians; {setup}\n")
    click.echo("| rows per encode call | seconds | rows/s | vs one call |")
    click.echo("|---:|---:|---:|---:|")
    for size in variants:
        t = statistics.median(times[str(size)])
        click.echo(f"| {size} | {t:.1f} | {rows / t:.0f} | {ratios[str(size)]:.2f} |")


if __name__ == "__main__":
    main()
