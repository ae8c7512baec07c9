"""The linear head's regularisation and the auto head's fallback, chosen on train/valid tasks
only (never test): BANKING77's train split halved per intent (support pool | queries), CLINC150
train (support pool) and valid (queries). Accuracy per (dataset, k) for the centroid head, the
linear head at several C, and auto (cross-validated choice), mean over seeds.

    .venv/bin/python benchmarks/head_regularisation.py --out benchmarks/results/head_regularisation.json
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import click
import numpy as np

from prune import Encoder, EncoderOptions
from prune.cpu import cpu_model
from prune.head import centroid_head, fit_head, linear_head
from prune.search.data import DEFAULT_DATA_DIR
from prune.search.evaluate import EvalSettings, encode_for_eval
from prune.search.sampling import k_shot
from prune.search.tune import search_tasks


def heads(c_grid: tuple[float, ...]) -> dict[str, object]:
    out: dict[str, object] = {"centroid": lambda x, y: centroid_head(x, y)}
    for c in c_grid:
        out[f"linear C={c:g}"] = lambda x, y, c=c: linear_head(x, y, c=c)
    out["auto"] = lambda x, y: fit_head("auto", x, y)
    return out


@click.command()
@click.option("--shots", default="1,2,5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--c-grid", default="0.3,1,3,10,30,100", show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(shots: str, seeds: int, c_grid: str, dtype: str, out: Path | None) -> None:
    ks = tuple(int(k) for k in shots.split(","))
    grid = tuple(float(c) for c in c_grid.split(","))
    encoder = Encoder(options=EncoderOptions(dtype=dtype))
    settings = EvalSettings(ks, seeds, ("centroid",))
    results: dict[str, dict[str, float]] = {}
    for task in search_tasks(DEFAULT_DATA_DIR, ("banking77", "clinc150"), query_per_intent=10):
        enc = encode_for_eval(encoder, task.support, task.query, settings)
        for k in ks:
            for name, fit in heads(grid).items():
                accs = []
                for seed in range(seeds):
                    idx = k_shot(task.support.labels, k, seed)
                    head = fit(np.stack([enc.support[i] for i in idx]), [task.support.labels[i] for i in idx])  # type: ignore[operator]
                    pred = [head.labels[j] for j in head.classify(enc.query).label_index.tolist()]
                    accs.append(np.mean([p == t for p, t in zip(pred, task.query.labels, strict=True)]))
                results.setdefault(name, {})[f"{task.dataset}/{k}-shot"] = 100 * statistics.fmean(accs)
            print(
                f"{task.dataset} k={k}: "
                + ", ".join(f"{n} {r[f'{task.dataset}/{k}-shot']:.1f}" for n, r in results.items())
            )
    cells = list(next(iter(results.values())))
    print("\n| head | " + " | ".join(cells) + " | mean |\n|---|" + "---:|" * (len(cells) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.1f}" for c in cells) + f" | {statistics.fmean(r.values()):.2f} |")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"cpu": cpu_model(), "dtype": encoder.options.dtype, "seeds": seeds, "accuracy": results}
        out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
