"""`jobs eval`: several encoder variants side by side on several datasets, as JSON and Markdown."""

from __future__ import annotations

import platform
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from prune.config import EncoderOptions, resolve_dtype
from prune.encoder import Encoder
from prune.errors import ConfigError, DataError
from prune.search.data import Split, available, has_split, load_split
from prune.search.evaluate import EvalSettings, Variant, evaluate_variant, in_scope_texts
from prune.search.timing import interleaved_seconds, median_ratios


def encoders_for(variants: Sequence[Variant], model: str | None) -> dict[str, Encoder]:
    """One loaded encoder per dtype, shared by every pruning config of that dtype."""
    base: dict[str, Encoder] = {}
    out = {}
    for v in variants:
        if v.dtype not in base:
            base[v.dtype] = Encoder(model, None, EncoderOptions(dtype=resolve_dtype(v.dtype)))
        out[v.name] = base[v.dtype].with_prune(v.prune)
    return out


def _load_splits(data_dir: str | Path, datasets: Sequence[str], split: str) -> dict[str, tuple[Split, Split]]:
    """Per dataset: (train as the support pool, the scored split)."""
    splits = {}
    for ds in datasets:
        if not has_split(data_dir, ds, split):
            raise DataError(f"{Path(data_dir) / ds / (split + '.jsonl')} not found: {available(data_dir)}")
        splits[ds] = (load_split(data_dir, ds, "train"), load_split(data_dir, ds, split))
    return splits


def _accuracy_rows(
    splits: dict[str, tuple[Split, Split]],
    variants: Sequence[Variant],
    encoders: dict[str, Encoder],
    settings: EvalSettings,
    progress: Callable[..., object],
    support_encoder: Encoder | None = None,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    bar = progress(total=len(splits) * len(variants), desc="eval", unit="run", disable=None)
    for ds, (support, query) in splits.items():
        for v in variants:
            enc, summary = evaluate_variant(encoders[v.name], support, query, settings, support_encoder)
            results += [
                {
                    "dataset": ds,
                    "variant": v.name,
                    **row,
                    "encode_seconds": enc.seconds,
                    "utterances_per_s": len(query) / max(enc.seconds, 1e-9),
                    "tokens": enc.tokens,
                    "tokens_kept": enc.tokens_kept,
                }
                for row in summary
            ]
            bar.update(1)  # type: ignore[attr-defined]  # the progress callable returns a tqdm bar
    bar.close()  # type: ignore[attr-defined]  # as above
    return results


def run_eval(
    data_dir: str | Path,
    datasets: Sequence[str],
    variants: Sequence[Variant],
    settings: EvalSettings,
    split: str = "test",
    timing_repeats: int = 3,
    timing_texts: int = 1000,
    model: str | None = None,
    progress: Callable[..., object] = tqdm,
    support_variant: Variant | None = None,
) -> dict[str, Any]:
    """Accuracy of every variant on every dataset, and their speed side by side (interleaved).
    With ``support_variant``, every variant's heads are built from support encoded by that one."""
    if not variants:
        raise ConfigError("give at least one encoder variant (--config)")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"encoder variants must be distinct, got {names}")
    splits = _load_splits(data_dir, datasets, split)
    encoders = encoders_for(variants, model)
    support_encoder = encoders_for([support_variant], model)[support_variant.name] if support_variant else None
    results = _accuracy_rows(splits, variants, encoders, settings, progress, support_encoder)
    sample = list(in_scope_texts(splits[datasets[0]][1], timing_texts))
    times = interleaved_seconds({n: partial(e.encode, sample) for n, e in encoders.items()}, timing_repeats)
    first = next(iter(encoders.values()))
    return {
        "kind": "fewshot-eval",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "datasets": list(datasets),
        "split": split,
        "support_variant": support_variant.name if support_variant else None,
        "settings": {
            "shots": list(settings.shots),
            "seeds": settings.seeds,
            "heads": list(settings.heads),
            "calibration_per_intent": settings.calibration_per_intent,
            "intent_names": settings.intent_names,
        },
        "model": {"path": str(first.spec.path), "fingerprint": first.fingerprint},
        "variants": [
            {"name": v.name, "dtype": v.dtype, "prune": v.prune.to_dict() if v.prune else None} for v in variants
        ],
        "timing": {
            "texts": len(sample),
            "from": datasets[0],
            "repeats": timing_repeats,
            "baseline": names[0],
            "median_seconds": {n: statistics.median(t) for n, t in times.items()},
            "speedup": median_ratios(times, names[0]),
        },
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads(), "torch": torch.__version__},
        "results": results,
    }


def render_markdown(report: dict[str, Any]) -> str:
    """Accuracy per dataset x head x k with variants side by side, then speed, tokens, F1 and OOS."""
    variants = [v["name"] for v in report["variants"]]
    rows = report["results"]
    index = {(r["dataset"], r["head"], r["k"], r["variant"]): r for r in rows}
    datasets = list(report["datasets"])
    first_head = report["settings"]["heads"][0]
    kmax = max(report["settings"]["shots"])
    lines = [
        f"Few-shot accuracy (%), mean ± std over {report['settings']['seeds']} seeds, {report['split']} split "
        f"(CLINC150: in-scope rows, closed set); intent names {report['settings'].get('intent_names', 'off')}"
        + (f"; support encoded with {report['support_variant']}." if report.get("support_variant") else "."),
        "",
        "| dataset | head | k | " + " | ".join(variants) + " |",
        "|---|---|---:|" + "---:|" * len(variants),
    ]
    keys = sorted({(r["dataset"], r["head"], r["k"]) for r in rows}, key=lambda x: (x[0], x[1], int(x[2])))
    for ds, head, k in keys:
        cells = [
            f"{100 * r['accuracy']:.1f} ± {100 * r['accuracy_std']:.1f}" if (r := index.get((ds, head, k, v))) else ""
            for v in variants
        ]
        lines.append(f"| {ds} | {head} | {k} | " + " | ".join(cells) + " |")
    timing = report["timing"]
    header = ["variant", "speed-up", "tokens kept"] + [f"{ds} macro-F1" for ds in datasets]
    has_oos = [ds for ds in datasets if "oos_recall" in index.get((ds, first_head, kmax, variants[0]), {})]
    header += [f"{ds} OOS recall / precision" for ds in has_oos]
    lines += [
        "",
        f"Speed-up: median of {timing['repeats']} interleaved encodes of {timing['texts']} {timing['from']} "
        f"texts, relative to `{timing['baseline']}`. Tokens kept: over the scored splits. "
        f"F1 and OOS: {first_head} head, {kmax}-shot.",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for v in variants:
        per_ds = [index[(ds, first_head, kmax, v)] for ds in datasets]
        seen = sum(r["tokens"] for r in per_ds)
        kept = sum(r["tokens_kept"] for r in per_ds)
        cells = [v, f"{timing['speedup'][v]:.2f}", f"{100 * kept / max(seen, 1):.1f}%"]
        cells += [f"{100 * r['macro_f1']:.1f}" for r in per_ds]
        cells += [
            f"{100 * index[(ds, first_head, kmax, v)]['oos_recall']:.1f} / "
            f"{100 * index[(ds, first_head, kmax, v)]['oos_precision']:.1f}"
            for ds in has_oos
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
