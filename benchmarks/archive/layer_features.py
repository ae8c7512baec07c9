"""Features for the linear head from more than the last layer: a lead for issue 19's 5-shot
targets, measured on train/valid tasks only (BANKING77 train halves, CLINC150 train -> valid;
never test). Unpruned encoder; the linear head (C=30) on k examples per intent, scored as `jobs eval` scores
it, mean over seeds.

- ``final``: the shipped sentence embedding (mean of layer 6, L2-normalised).
- ``layers 6+5``: that, concatenated with the same pooling of layer 5 (each normalised).
- ``layers 6+5+4``: and of layer 4.
- ``mean of 6 and 5``: the two pooled layers averaged, renormalised (same dimension as today).

    .venv/bin/python benchmarks/layer_features.py --out benchmarks/results/layer_features.json
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from results_io import accuracy_table, write_record

from prune import Encoder, EncoderOptions
from prune.batching import token_batches
from prune.search.data import DEFAULT_DATA_DIR
from prune.search.evaluate import Encoded, EvalSettings, needed_support, score_runs, summarise
from prune.search.tune import search_tasks

FEATURES = ("final", "layers 6+5", "layers 6+5+4", "mean of 6 and 5")


def features(encoder: Encoder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Each feature set [N, D * layers] for the texts, in input order."""
    ids, _ = encoder.tokenize(list(texts))
    # the batches hidden_states() runs, in its order (the same call with the same arguments)
    batches = token_batches([len(x) for x in ids], encoder.options.token_budget, encoder.options.max_batch_rows)
    dims = {"final": 1, "layers 6+5": 2, "layers 6+5+4": 3, "mean of 6 and 5": 1}
    out = {name: np.zeros((len(texts), encoder.dim * n), np.float32) for name, n in dims.items()}
    for batch, (states, mask, _) in zip(batches, encoder.hidden_states(list(texts)), strict=True):
        m = mask[:, :, None].float()  # [B, T, 1]; states: 7 x [B, T, D]
        pooled = [F.normalize((h * m).sum(1) / m.sum(1), dim=1) for h in states]  # 7 x [B, D]
        p6, p5, p4 = pooled[6], pooled[5], pooled[4]
        out["final"][batch] = p6.numpy()
        out["layers 6+5"][batch] = (torch.cat([p6, p5], 1) / 2**0.5).numpy()  # [B, 2D], unit norm
        out["layers 6+5+4"][batch] = (torch.cat([p6, p5, p4], 1) / 3**0.5).numpy()  # [B, 3D]
        out["mean of 6 and 5"][batch] = F.normalize(p6 + p5, dim=1).numpy()  # [B, D]
    return out


@click.command()
@click.option("--shots", default="5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(shots: str, seeds: int, dtype: str, out: Path | None) -> None:
    ks = tuple(int(k) for k in shots.split(","))
    encoder = Encoder(options=EncoderOptions(dtype=dtype))
    settings = EvalSettings(ks, seeds, ("linear",), intent_names="off")
    results: dict[str, dict[str, float]] = {name: {} for name in FEATURES}
    for task in search_tasks(DEFAULT_DATA_DIR, ("banking77", "clinc150"), query_per_intent=30):
        used = needed_support(task.support, settings)
        sampled = features(encoder, [task.support.texts[i] for i in used])
        query = features(encoder, task.query.texts)
        for name in FEATURES:
            enc = Encoded(dict(zip(used, sampled[name], strict=True)), query[name], 0.0, 0, 0)
            for r in summarise(score_runs(task.support, task.query, enc, settings)):  # as `jobs eval` scores
                results[name][f"{task.dataset}/{r['k']}-shot"] = 100 * float(r["accuracy"])  # type: ignore[arg-type]
        mine = {n: {c: round(v, 2) for c, v in r.items() if c.startswith(task.dataset)} for n, r in results.items()}
        print(task.dataset, mine, flush=True)
    print("\n" + accuracy_table("features", results))
    write_record(out, {"dtype": encoder.options.dtype, "seeds": seeds, "accuracy": results})


if __name__ == "__main__":
    main()
