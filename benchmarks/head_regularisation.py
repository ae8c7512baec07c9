"""The linear head's regularisation and the auto head's fallback, chosen on train/valid tasks
only (never test): BANKING77's train split halved per intent (support pool | queries), CLINC150
train (support pool) and valid (queries). Accuracy per (dataset, k) for the centroid head, the
linear head at several C, and auto (cross-validated choice), mean over seeds.

    .venv/bin/python benchmarks/head_regularisation.py --out benchmarks/results/head_regularisation.json

``--alternatives`` adds heads that were tried and not kept, at 5 and 10 shots: the linear head
mixed with the centroid head (log-probabilities, weight 0.3, cosine temperature 20); the
linear head on standardised features (C=0.3 and 1); C chosen per tenant by 5-fold
cross-validation over 3-100; features centred on the tenant's example mean and renormalised
(CL2N, as in SimpleShot); and the support set augmented with two pruned views of each example
(``s=4,q=0.5,l=1`` and ``s=4,q=0.3,l=2``, encoded by the same model). ``auto, higher CV wins (before)`` is the
auto rule before the clear-win margin, for comparison; ``--prune`` scores a pruned encoder's
embeddings, on which that rule flipped more often.

    .venv/bin/python benchmarks/head_regularisation.py --shots 5,10 --c-grid 30 --alternatives \
        --out benchmarks/results/head_alternatives.json

``--names`` adds the shipped heads with the intent names (as `tenants add --intent-names auto`),
and two controls that must be rejected: opaque names (``intent 1``...) and the true names
shifted one intent along the sorted list.

    .venv/bin/python benchmarks/head_regularisation.py --shots 1,2,5,10 --c-grid 30 --names \
        --out benchmarks/results/head_intent_names.json
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from results_io import accuracy_table, write_record

from prune import Encoder, EncoderOptions
from prune.config import PruneConfig
from prune.heads.choice import FALLBACK_KIND, cross_validate, fit_choice, folds_for
from prune.heads.head import STORED_KINDS, centroid_head, fit_head, linear_head
from prune.heads.intent_names import IntentNames, encode_names
from prune.search.data import DEFAULT_DATA_DIR
from prune.search.evaluate import EvalSettings, encode_for_eval
from prune.search.sampling import k_shot
from prune.search.tune import search_tasks

VIEW_CONFIGS = ("s=4,q=0.5,l=1", "s=4,q=0.3,l=2")  # --alternatives: pruned views of the support


@dataclass(frozen=True)
class Support:
    x: np.ndarray  # [n, d] the k-shot examples
    y: list[str]
    views: tuple[np.ndarray, ...] = ()  # each [n, d]: the same examples, encoded by a pruned encoder
    names: dict[str, IntentNames] | None = None  # --names: the true intent names and the controls


Predict = Callable[[Support, np.ndarray], list[str]]  # support, queries [m, d] -> labels


def _shipped(fit: Callable[[np.ndarray, list[str]], Any]) -> Predict:
    def predict(s: Support, q: np.ndarray) -> list[str]:
        head = fit(s.x, s.y)
        return [head.labels[j] for j in head.classify(q).label_index.tolist()]

    return predict


def _higher_cv_wins(x: np.ndarray, y: list[str]) -> Any:
    """The auto rule before: whichever kind has the higher cross-validated accuracy (ties: linear)."""
    folds = folds_for(y)
    if folds < 2:
        return fit_head(FALLBACK_KIND, x, y)
    acc = {kind: cross_validate(x, y, kind, folds).accuracy for kind in STORED_KINDS}
    return fit_head(max(STORED_KINDS, key=lambda k: (acc[k], k == "linear")), x, y)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _mixed(s: Support, q: np.ndarray, weight: float = 0.3, temperature: float = 20.0) -> list[str]:
    """log p(linear) * (1 - weight) + log softmax(temperature * cosine to centroids) * weight."""
    from scipy.special import log_softmax
    from sklearn.linear_model import LogisticRegression

    x, y = s.x, s.y
    labels = sorted(set(y))
    yi = np.array([labels.index(v) for v in y])
    xs, qs = _unit(x), _unit(q)  # [n, d], [m, d]
    centroids = _unit(np.stack([xs[yi == c].mean(0) for c in range(len(labels))]))  # [c, d]
    lr = LogisticRegression(C=30, max_iter=2000, tol=1e-6).fit(xs, yi)
    score = (1 - weight) * lr.predict_log_proba(qs) + weight * log_softmax(temperature * qs @ centroids.T, axis=1)
    return [labels[j] for j in score.argmax(1)]  # [m]


def _standardised(c: float) -> Predict:
    def predict(s: Support, q: np.ndarray) -> list[str]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, tol=1e-6))
        return list(model.fit(_unit(s.x), s.y).predict(_unit(q)))

    return predict


def _cv_c(s: Support, q: np.ndarray) -> list[str]:
    """C chosen per tenant: the best 5-fold (or fewer) cross-validated accuracy over 3-100."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = folds_for(s.y)
    best = 30.0
    if folds >= 2:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        x = _unit(s.x)
        score = {
            c: cross_val_score(LogisticRegression(C=c, max_iter=2000, tol=1e-6), x, s.y, cv=cv).mean()
            for c in (3, 10, 30, 100)
        }
        best = max(score, key=lambda c: (score[c], c == 30.0))
    return _shipped(lambda x, y: linear_head(x, y, c=best))(s, q)


def _centred(s: Support, q: np.ndarray) -> list[str]:
    """CL2N: subtract the tenant's example mean, renormalise, then the linear head (C=30)."""
    mu = _unit(s.x).mean(0)  # [d]
    return _shipped(lambda x, y: linear_head(x, y))(Support(_unit(_unit(s.x) - mu), s.y), _unit(_unit(q) - mu))


def _with_views(s: Support, q: np.ndarray) -> list[str]:
    """The linear head (C=30) fitted on the examples and their pruned views together."""
    x = np.vstack([s.x, *s.views])  # [n * (1 + views), d]
    return _shipped(lambda x, y: linear_head(x, y))(Support(x, s.y * (1 + len(s.views))), q)


def _with_names(kind: str, which: str) -> Predict:
    def predict(s: Support, q: np.ndarray) -> list[str]:
        assert s.names is not None
        return _shipped(lambda x, y: fit_choice(kind, x, y, names=s.names[which]).head)(s, q)

    return predict


def name_sets(encoder: Encoder, labels: list[str]) -> dict[str, IntentNames]:
    """The true names, and two controls: opaque names (``intent 1``...) and the true names
    assigned to the wrong intents (a fixed derangement)."""
    true = encode_names(encoder, labels)
    opaque = encoder.encode([f"intent {i + 1}" for i in range(len(true.labels))]).embeddings
    shifted = np.roll(true.embeddings, 1, axis=0)  # [C, D] each intent gets its neighbour's name
    return {"true": true, "opaque": IntentNames(true.labels, opaque), "shifted": IntentNames(true.labels, shifted)}


def heads(c_grid: tuple[float, ...], alternatives: bool, names: bool = False) -> dict[str, Predict]:
    out: dict[str, Predict] = {"centroid": _shipped(lambda x, y: centroid_head(x, y))}
    for c in c_grid:
        out[f"linear C={c:g}"] = _shipped(lambda x, y, c=c: linear_head(x, y, c=c))
    out["auto"] = _shipped(lambda x, y: fit_choice("auto", x, y).head)
    out["auto, higher CV wins (before)"] = _shipped(_higher_cv_wins)
    if alternatives:
        out["linear C=30 + centroid (0.3)"] = _mixed
        out["standardised linear C=0.3"] = _standardised(0.3)
        out["standardised linear C=1"] = _standardised(1.0)
        out["linear, C by cross-validation"] = _cv_c
        out["linear C=30, centred (CL2N)"] = _centred
        out["linear C=30, support + 2 pruned views"] = _with_views
    if names:
        out["auto + intent names"] = _with_names("auto", "true")
        out["linear + intent names"] = _with_names("linear", "true")
        out["auto + opaque names (control)"] = _with_names("auto", "opaque")
        out["auto + shifted names (control)"] = _with_names("auto", "shifted")
    return out


@click.command()
@click.option("--shots", default="1,2,5,10", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--c-grid", default="0.3,1,3,10,30,100", show_default=True)
@click.option("--dtype", default="auto", show_default=True)
@click.option("--prune", "prune_text", default=None, help="Embeddings from a pruned encoder, e.g. s=24,q=0.4,l=1.")
@click.option("--alternatives", is_flag=True, help="Also the heads tried and not kept.")
@click.option("--names", is_flag=True, help="Also the heads with intent names, and two controls.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(
    shots: str,
    seeds: int,
    c_grid: str,
    dtype: str,
    prune_text: str | None,
    alternatives: bool,
    names: bool,
    out: Path | None,
) -> None:
    ks = tuple(int(k) for k in shots.split(","))
    grid = tuple(float(c) for c in c_grid.split(","))
    prune = PruneConfig.parse(prune_text) if prune_text else None
    encoder = Encoder(prune=prune, options=EncoderOptions(dtype=dtype))
    settings = EvalSettings(ks, seeds, ("centroid",), intent_names="off")
    results: dict[str, dict[str, float]] = {}
    for task in search_tasks(DEFAULT_DATA_DIR, ("banking77", "clinc150"), query_per_intent=10):
        enc = encode_for_eval(encoder, task.support, task.query, settings)
        views = [
            encode_for_eval(encoder, task.support, task.query, settings, encoder.with_prune(PruneConfig.parse(v)))
            for v in (VIEW_CONFIGS if alternatives else ())
        ]
        named = name_sets(encoder, task.support.labels) if names else None
        for k in ks:
            for name, predict in heads(grid, alternatives, names).items():
                accs = []
                for seed in range(seeds):
                    idx = k_shot(task.support.labels, k, seed)
                    support = Support(
                        np.stack([enc.support[i] for i in idx]).astype(np.float32),
                        [task.support.labels[i] for i in idx],
                        tuple(np.stack([v.support[i] for i in idx]).astype(np.float32) for v in views),
                        named,
                    )
                    pred = predict(support, np.asarray(enc.query, dtype=np.float32))
                    accs.append(np.mean([p == t for p, t in zip(pred, task.query.labels, strict=True)]))
                results.setdefault(name, {})[f"{task.dataset}/{k}-shot"] = 100 * statistics.fmean(accs)
            print(
                f"{task.dataset} k={k}: "
                + ", ".join(f"{n} {r[f'{task.dataset}/{k}-shot']:.1f}" for n, r in results.items())
            )
    print("\n" + accuracy_table("head", results))
    write_record(out, {"dtype": encoder.options.dtype, "prune": prune_text, "seeds": seeds, "accuracy": results})


if __name__ == "__main__":
    main()
