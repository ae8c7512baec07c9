"""The three attention forms of ``prune.models.bert``, each compiled by Inductor as the int8 layers run
them, per call at several (rows x tokens) shapes: explicit matmuls (``matmul_attention``), summed
products (``summed_attention``, compiled rows up to ``COMPILED_ATTENTION_MAX_TOKENS``) and the fused
``scaled_dot_product_attention``. Every repeat runs every form once (interleaved); medians, in
microseconds. Random projections [B, T, 3 x 12 heads x 32] split as ``Layer.attend`` splits them;
a quarter of the rows padded.

    python benchmarks/attention.py --threads 1 --shape 68x15 --shape 32x32 --out runs/attention.json
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from prune.cpu import cpu_model
from prune.models.bert import matmul_attention, split_heads, summed_attention

HEADS, HEAD_DIM = 12, 32
Form = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def matmul_form(qkv: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    q, k, v = split_heads(qkv, HEADS)
    return matmul_attention(q, k, v, keys, v.dtype)[0]


def summed_form(qkv: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    q, k, v = split_heads(qkv, HEADS)
    return summed_attention(q, k, v, keys)


def fused_form(qkv: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    q, k, v = split_heads(qkv, HEADS)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keys)


FORMS: dict[str, Form] = {"matmuls": matmul_form, "summed": summed_form, "fused": fused_form}


def _shape(text: str) -> tuple[int, int]:
    try:
        rows, tokens = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected ROWSxTOKENS such as 68x15, got {text!r}") from None
    if rows < 1 or tokens < 2:
        raise click.BadParameter(f"expected at least 1 row and 2 tokens, got {text!r}")
    return rows, tokens


SHAPES = ("68x15", "128x8", "42x24", "32x32", "20x50", "16x64")


@click.command()
@click.option("--shape", "shapes", multiple=True, default=SHAPES, show_default=True, help="ROWSxTOKENS (repeatable).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=15, show_default=True)
@click.option("--calls", type=click.IntRange(min=1), default=10, show_default=True, help="Calls per timing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write JSON.")
def main(threads: int, shapes: tuple[str, ...], repeats: int, calls: int, out: Path | None) -> None:
    torch.set_num_threads(threads)
    compiled = {name: torch.compile(f, dynamic=True) for name, f in FORMS.items()}
    rows = []
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for b, t in map(_shape, shapes):
            qkv = torch.randn(b, t, 3 * HEADS * HEAD_DIM, generator=gen)  # [B, T, 3D]
            lengths = torch.full((b,), t)  # [B]
            lengths[: b // 4] = max(1, t * 3 // 4)
            keys = (torch.arange(t)[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, T]
            want = matmul_form(qkv, keys)
            error = {n: float((f(qkv, keys) - want).abs().max()) for n, f in compiled.items()}
            times: dict[str, list[float]] = {n: [] for n in compiled}
            for _ in range(repeats):
                for n, f in compiled.items():
                    start = time.perf_counter()
                    for _ in range(calls):
                        f(qkv, keys)
                    times[n].append((time.perf_counter() - start) / calls * 1e6)
            med = {n: statistics.median(ts) for n, ts in times.items()}
            rows.append({"rows": b, "tokens": t, "median_us": med, "max_abs_error": error})
            click.echo(f"{b} x {t}: " + ", ".join(f"{n} {m:.0f} us" for n, m in med.items()))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = {"threads": threads, "repeats": repeats, "cpu": cpu_model(), "results": rows}
        out.write_text(json.dumps(summary, indent=2))
        click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
