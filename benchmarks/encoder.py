"""Encoder throughput on the BANKING77 test texts, as ratios to sentence-transformers.

Baseline: ``SentenceTransformer.encode`` (fp32, batch 32). Variants: this encoder unpruned in
fp32 and bf16, and each ``--prune`` config in both dtypes. Every repeat runs every variant
once, in a rotated order (interleaved), so CPU steal hits them alike; medians are reported.

    python benchmarks/encoder.py --prune s=15,q=0.8,l=1 --repeats 5 --out runs/bench_encoder.json

``--fused-attention`` adds each dtype unpruned with the fused attention kernel at every width (the
encoder's kernel before short rows got explicit matmuls, ``prune.models.bert.EXPLICIT_ATTENTION_MAX_TOKENS``,
and compiled int8 rows summed products, ``prune.models.bert.COMPILED_ATTENTION_MAX_TOKENS``);
``--join K`` encodes every K consecutive texts joined as one, for longer rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch

import prune.models.bert
from jobs.cli.options import prune_option
from prune import Encoder, EncoderOptions, PruneConfig
from prune.config import DEFAULT_TOKEN_BUDGET
from prune.cpu import cpu_model, native_bf16
from prune.models.files import default_model_dir
from prune.search.data import DEFAULT_DATA_DIR

DEFAULT_DATA = DEFAULT_DATA_DIR


@dataclass
class Variant:
    name: str
    run: Callable[[list[str]], np.ndarray]
    kept_fraction: float = 1.0
    prune: str | None = None
    dtype: str = "float32"


def load_texts(data_dir: Path, limit: int | None, texts_of: str = "banking77/test", join: int = 1) -> list[str]:
    path = data_dir / f"{texts_of}.jsonl"
    if not path.exists():
        raise click.UsageError(f"{path} not found; pass --data-dir pointing at the datasets folder")
    with path.open() as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    texts = [" ".join(texts[i : i + join]) for i in range(0, len(texts), join)]
    return texts[:limit] if limit else texts


@contextlib.contextmanager
def fused_attention() -> Iterator[None]:
    """The fused attention kernel at every width, eager and compiled, while the block runs."""
    shipped = prune.models.bert.EXPLICIT_ATTENTION_MAX_TOKENS, prune.models.bert.COMPILED_ATTENTION_MAX_TOKENS
    prune.models.bert.EXPLICIT_ATTENTION_MAX_TOKENS = prune.models.bert.COMPILED_ATTENTION_MAX_TOKENS = 0
    try:
        yield
    finally:
        prune.models.bert.EXPLICIT_ATTENTION_MAX_TOKENS, prune.models.bert.COMPILED_ATTENTION_MAX_TOKENS = shipped


def ours_fused(model: str | None, dtype: str, budget: int, texts: list[str]) -> Variant:
    with fused_attention():
        v = ours(model, None, dtype, budget, texts)
    run = v.run

    def fused_run(t: list[str]) -> np.ndarray:
        with fused_attention():
            return run(t)

    return Variant(f"{v.name}, fused attention at every width", fused_run, v.kept_fraction, None, dtype)


def ours(model: str | None, prune: PruneConfig | None, dtype: str, budget: int, texts: list[str]) -> Variant:
    enc = Encoder(model, prune, EncoderOptions(dtype=dtype, token_budget=budget))  # type: ignore[arg-type]
    r = enc.encode(texts)  # warm-up, and the token accounting
    name = f"ours {dtype}" + (f" pruned {prune}" if prune else "")
    return Variant(
        name,
        lambda t: enc.encode(t).embeddings,
        float(r.tokens_kept.sum() / r.tokens.sum()),
        str(prune) if prune else None,
        dtype,
    )


@click.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA)
@click.option("--model", default=None, help="Model directory (default: packaged all-MiniLM-L6-v2).")
@click.option("--prune", "prunes", multiple=True, help="A pruning config or 'tuned' to measure (repeatable).")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use the first N texts.")
@click.option("--texts", "texts_of", default="banking77/test", show_default=True, help="DATASET/SPLIT to encode.")
@click.option("--token-budget", type=click.IntRange(min=1), default=DEFAULT_TOKEN_BUDGET, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=os.cpu_count(), show_default=True)
@click.option(
    "--dtype",
    "dtypes",
    multiple=True,
    type=click.Choice(["float32", "bfloat16", "int8"]),
    default=("float32", "bfloat16"),
    show_default=True,
    help="Our dtypes to measure, each unpruned and with every --prune (repeatable); float32 is always "
    "measured, as the cosine reference.",
)
@click.option("--fused-attention", "fused", is_flag=True, help="Also each dtype with the fused attention kernel only.")
@click.option("--join", type=click.IntRange(min=1), default=1, show_default=True, help="Join every K texts as one.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON.")
def main(
    data_dir: Path,
    model: str | None,
    prunes: tuple[str, ...],
    repeats: int,
    limit: int | None,
    texts_of: str,
    token_budget: int,
    threads: int,
    dtypes: tuple[str, ...],
    fused: bool,
    join: int,
    out: Path | None,
) -> None:
    torch.set_num_threads(threads)
    texts = load_texts(data_dir, limit, texts_of, join)
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model or default_model_dir()), device="cpu")
    st.encode(texts[:64], batch_size=32)
    variants = [
        Variant("sentence-transformers fp32 b32", lambda t: st.encode(t, batch_size=32, convert_to_numpy=True)),
    ]
    dtypes = ("float32", *(d for d in dtypes if d != "float32"))
    variants += [ours(model, None, dtype, token_budget, texts) for dtype in dtypes]
    unpruned = variants[1:]
    if fused:
        variants += [ours_fused(model, dtype, token_budget, texts) for dtype in dtypes]
    for spec in prunes:
        for dtype in dtypes:
            variants.append(ours(model, prune_option(None, None, spec), dtype, token_budget, texts))

    reference = variants[1].run(texts)
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    cosine: dict[str, float] = {}
    for rep in range(repeats):
        order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
        for v in order:
            start = time.perf_counter()
            emb = v.run(texts)
            times[v.name].append(time.perf_counter() - start)
            cosine[v.name] = float((emb * reference).sum(1).mean())
        click.echo(f"repeat {rep + 1}/{repeats} done", err=True)

    base = statistics.median(times[variants[0].name])
    rows = []
    for v in variants:
        med = statistics.median(times[v.name])
        same_dtype_unpruned = next((w for w in unpruned if w.dtype == v.dtype), variants[0])
        rows.append(
            {
                "variant": v.name,
                "dtype": v.dtype,
                "prune": v.prune,
                "median_seconds": med,
                "utterances_per_s": len(texts) / med,
                "ratio_to_baseline": base / med,
                "ratio_to_unpruned_same_dtype": statistics.median(times[same_dtype_unpruned.name]) / med,
                "tokens_kept_pct": 100 * v.kept_fraction,
                "mean_cosine_to_ours_fp32": cosine[v.name],
                "seconds": times[v.name],
            }
        )

    click.echo(
        f"\n{len(texts)} {texts_of} texts (joined by {join}), {repeats} interleaved repeats, "
        f"{threads} threads, token budget {token_budget}; medians\n"
    )
    click.echo("| variant | utt/s | x baseline | x unpruned same dtype | tokens kept | mean cos |")
    click.echo("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        click.echo(
            f"| {r['variant']} | {r['utterances_per_s']:.0f} | {r['ratio_to_baseline']:.2f} | "
            f"{r['ratio_to_unpruned_same_dtype']:.2f} | {r['tokens_kept_pct']:.1f}% | "
            f"{r['mean_cosine_to_ours_fp32']:.4f} |"
        )
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "texts": len(texts),
                    "texts_of": texts_of,
                    "join": join,
                    "repeats": repeats,
                    "threads": threads,
                    "token_budget": token_budget,
                    "machine": {
                        "cpu": cpu_model(),
                        "bf16_native": native_bf16(),
                        "cpu_count": os.cpu_count(),
                        "platform": platform.platform(),
                        "torch": torch.__version__,
                    },
                    "results": rows,
                },
                indent=2,
            )
        )
        click.echo(f"\nwrote {out}", err=True)


if __name__ == "__main__":
    main()
