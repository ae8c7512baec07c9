"""`jobs tune`: the paper's multi-task offline search for ONE pruning config.

Tasks come from train/valid data only (never test): for a dataset with a valid split the
support pool is train and the queries are valid; otherwise train is split per intent into a
support half and a query half. Each (dataset, k) is a task. Every grid config is scored on
every task (mean accuracy over seeds, with the linear head: what ``auto`` keeps on these tasks,
benchmarks/head_regularisation.py) against the unpruned encoder; the
feasible ones are timed interleaved with the unpruned encoder, and the rule picks:

- mode ``speed`` (default): the largest measured speed-up whose accuracy drop is within
  ``max_drop`` points on every task;
- mode ``budget``: the most accurate config (smallest worst-task drop) that keeps at most
  ``max_kept`` of the tokens.

The unpruned encoder is always a candidate (drop 0, speed-up 1), so the search always answers.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from prune.config import EncoderOptions, PruneConfig, resolve_dtype
from prune.encoder import Encoder
from prune.errors import ConfigError
from prune.labels import OOS_LABEL
from prune.search.data import Split, has_split, load_split
from prune.search.evaluate import EvalSettings, encode_for_eval, score_runs
from prune.search.timing import interleaved_seconds, median_ratios


@dataclass(frozen=True)
class Grid:
    min_tokens: tuple[int, ...] = (8, 12, 16)
    quantile: tuple[float, ...] = (0.2, 0.4, 0.6)
    layer: tuple[int, ...] = (1, 2, 3)
    score: tuple[str, ...] = ("attention", "norm", "learned")

    def to_dict(self) -> dict[str, tuple[object, ...]]:
        return {"min_tokens": self.min_tokens, "quantile": self.quantile, "layer": self.layer, "score": self.score}

    def configs(self) -> list[PruneConfig]:
        return [
            PruneConfig(s, q, lay, sc)
            for s, q, lay, sc in itertools.product(self.min_tokens, self.quantile, self.layer, self.score)
        ]


@dataclass(frozen=True)
class TaskSet:
    """Per dataset: the support pool and the query split of the search (train/valid only)."""

    dataset: str
    support: Split
    query: Split


@dataclass
class Measurement:
    config: PruneConfig | None  # None = unpruned
    accuracy: dict[str, float]  # task name -> mean accuracy (0..1)
    tokens_kept: float  # fraction of query tokens kept
    speedup: float | None = None
    drops: dict[str, float] = field(default_factory=dict)  # task -> points lost vs unpruned

    @property
    def worst_drop(self) -> float:
        return max(self.drops.values()) if self.drops else 0.0

    @property
    def mean_accuracy(self) -> float:
        return statistics.fmean(self.accuracy.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "config": self.config.to_dict() if self.config else None,
            "accuracy": self.accuracy,
            "drops_pt": self.drops,
            "worst_drop_pt": self.worst_drop,
            "tokens_kept": self.tokens_kept,
            "speedup": self.speedup,
        }


def search_tasks(
    data_dir: str | Path, datasets: Sequence[str], query_per_intent: int, seed: int = 1234
) -> list[TaskSet]:
    out = []
    for ds in datasets:
        train = load_split(data_dir, ds, "train")
        in_scope = [i for i, label in enumerate(train.labels) if label != OOS_LABEL]
        if has_split(data_dir, ds, "valid"):
            support = train.subset(in_scope)
            query_full = load_split(data_dir, ds, "valid")
            query = query_full.subset(_per_intent(query_full.labels, range(len(query_full)), query_per_intent, seed))
        else:
            rng = random.Random(seed)
            by_label: dict[str, list[int]] = {}
            for i in in_scope:
                by_label.setdefault(train.labels[i], []).append(i)
            sup_idx, q_idx = [], []
            for label in sorted(by_label):
                idx = rng.sample(by_label[label], len(by_label[label]))
                half = len(idx) // 2
                sup_idx += idx[:half]
                q_idx += idx[half:][:query_per_intent]
            support, query = train.subset(sup_idx), train.subset(q_idx)
        out.append(TaskSet(ds, support, query))
    return out


def _per_intent(labels: Sequence[str], index: Sequence[int], n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i in index:
        if labels[i] != OOS_LABEL:
            by_label.setdefault(labels[i], []).append(i)
    return [i for label in sorted(by_label) for i in rng.sample(by_label[label], min(n, len(by_label[label])))]


def measure(encoder: Encoder, tasks: Sequence[TaskSet], settings: EvalSettings) -> Measurement:
    """Accuracy on every (dataset, k) task and the fraction of query tokens kept."""
    accuracy: dict[str, float] = {}
    seen = kept = 0
    for t in tasks:
        enc = encode_for_eval(encoder, t.support, t.query, settings)
        seen += enc.tokens
        kept += enc.tokens_kept
        runs = score_runs(t.support, t.query, enc, settings)  # every (seed, k), fit once each
        for k in settings.shots:
            accuracy[f"{t.dataset}/{k}-shot"] = statistics.fmean(float(r["accuracy"]) for r in runs if r["k"] == k)  # type: ignore[arg-type]  # rows mix str and float values
    return Measurement(encoder.prune, accuracy, kept / max(seen, 1))


def with_drops(m: Measurement, baseline: Measurement) -> Measurement:
    m.drops = {task: 100 * (baseline.accuracy[task] - acc) for task, acc in m.accuracy.items()}
    return m


def feasible(
    measurements: Sequence[Measurement], mode: str, max_drop: float, max_kept: float | None
) -> list[Measurement]:
    if mode == "speed":
        return [m for m in measurements if m.worst_drop <= max_drop + 1e-9]
    if mode == "budget":
        if max_kept is None:
            raise ConfigError("mode 'budget' needs a token budget (fraction of tokens kept, e.g. 0.7)")
        return [m for m in measurements if m.tokens_kept <= max_kept + 1e-9]
    raise ConfigError(f"mode must be 'speed' or 'budget', got {mode!r}")


def select(
    measurements: Sequence[Measurement], mode: str = "speed", max_drop: float = 0.5, max_kept: float | None = None
) -> Measurement:
    """The selection rule (see the module doc); candidates in speed mode must have been timed."""
    ok = feasible(measurements, mode, max_drop, max_kept)
    if not ok:
        raise ConfigError(
            f"no config satisfies the constraint (mode {mode}, max drop {max_drop} pt, "
            f"max share of tokens kept {max_kept}); "
            f"include the unpruned baseline or relax it"
        )
    if mode == "speed":
        untimed = [m for m in ok if m.speedup is None]
        if untimed:
            raise ConfigError(f"{len(untimed)} feasible configs were not timed")
        return max(ok, key=lambda m: (m.speedup, -m.worst_drop))
    return max(ok, key=lambda m: (-m.worst_drop, m.mean_accuracy, -m.tokens_kept))


def time_candidates(
    candidates: Sequence[Measurement],
    encoders: Callable[[PruneConfig | None], Encoder],
    texts: Sequence[str],
    repeats: int,
) -> None:
    """Set each candidate's speed-up over the unpruned encoder, timed interleaved."""
    runs = {"unpruned": encoders(None)}
    for m in candidates:
        if m.config is not None:
            runs[str(m.config)] = encoders(m.config)
    times = interleaved_seconds({n: partial(e.encode, list(texts)) for n, e in runs.items()}, repeats)
    ratios = median_ratios(times, "unpruned")
    for m in candidates:
        m.speedup = 1.0 if m.config is None else ratios[str(m.config)]


def to_time(
    candidates: list[Measurement],
    measured: list[Measurement],
    baseline: Measurement,
    mode: str,
    max_drop: float,
    max_kept: float | None,
    max_timed: int,
) -> list[Measurement]:
    """Speed mode: the feasible configs that keep the fewest tokens (the likeliest fastest) and the
    baseline; budget mode: the one most accurate config."""
    if mode != "speed":
        return [select(measured, mode, max_drop, max_kept)]
    chosen = sorted(candidates, key=lambda m: m.tokens_kept)[:max_timed]
    return chosen if baseline in chosen else [*chosen, baseline]


def _usable(grid: Grid, base: Encoder, log: Callable[[str], object]) -> list[PruneConfig]:
    """The grid's configs this model can run (score=learned needs a trained scorer)."""
    from prune.scorer import scorer_path

    configs = grid.configs()
    if "learned" in grid.score and scorer_path(base.spec.path, base.fingerprint) is None:
        log(f"no learned scorer for model {base.fingerprint}: skipping score=learned (run `jobs train-scorer`)")
        configs = [c for c in configs if c.score != "learned"]
    for c in configs:
        c.check_layers(base.num_layers)
    return configs


def run_tune(
    data_dir: str | Path,
    datasets: Sequence[str],
    grid: Grid,
    shots: tuple[int, ...] = (5, 10),
    seeds: int = 3,
    query_per_intent: int = 10,
    dtype: str = "bfloat16",
    mode: str = "speed",
    max_drop: float = 0.5,
    max_kept: float | None = None,
    max_timed: int = 8,
    timing_repeats: int = 3,
    model: str | None = None,
    head: str = "linear",
    progress: Callable[..., Any] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Search the grid on train/valid tasks and return the measurements and the chosen config."""
    progress = progress or (lambda it, **kw: it)
    tasks = search_tasks(data_dir, datasets, query_per_intent)
    # The names join the examples in the product's head; the search compares pruning configs under one
    # fixed head, and deciding the names costs two cross-validations per fit, so it leaves them out.
    settings = EvalSettings(shots, seeds, (head,), intent_names="off")
    base = Encoder(model, None, EncoderOptions(dtype=resolve_dtype(dtype)))
    configs = _usable(grid, base, log)
    baseline = measure(base, tasks, settings)
    with_drops(baseline, baseline)
    measured = [baseline]
    for c in progress(configs, desc="tune", unit="config"):
        measured.append(with_drops(measure(base.with_prune(c), tasks, settings), baseline))
    candidates = feasible(measured, mode, max_drop, max_kept)
    candidates = to_time(candidates, measured, baseline, mode, max_drop, max_kept, max_timed)
    texts = [t for ts in tasks for t in ts.query.texts]
    time_candidates(candidates, base.with_prune, random.Random(0).sample(texts, min(1000, len(texts))), timing_repeats)
    chosen = select(candidates, mode, max_drop, max_kept)
    return {
        "tasks": [{"dataset": t.dataset, "support": len(t.support), "query": len(t.query)} for t in tasks],
        "settings": {
            "shots": list(shots),
            "seeds": seeds,
            "query_per_intent": query_per_intent,
            "dtype": dtype,
            "mode": mode,
            "max_drop_pt": max_drop,
            "head": head,
            "max_kept": max_kept,
            "grid": grid.to_dict(),
        },
        "model": {"path": str(base.spec.path), "fingerprint": base.fingerprint},
        "baseline": baseline.to_dict(),
        "measurements": [m.to_dict() for m in measured],
        "timed": [m.to_dict() for m in candidates],
        "chosen": chosen.to_dict(),
    }


def tuned_record_of(report: dict[str, Any], command: str, data_dir: str | Path) -> dict[str, Any]:
    """The chosen config with its provenance (data, date, command, model, figures): what
    ``--prune tuned`` reads for that model (``prune.config.tuned_record``). A chosen unpruned
    encoder is recorded too (config null): for that model, ``tuned`` means no pruning."""
    from datetime import UTC, datetime

    from prune.models.files import weights_sha256

    chosen = report["chosen"]
    return {
        "config": chosen["config"],
        "provenance": {
            "command": command,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_dir": str(data_dir),
            "tasks": report["tasks"],
            "settings": report["settings"],
            "model_fingerprint": report["model"]["fingerprint"],
            "weights_sha256": weights_sha256(report["model"]["path"]),
        },
        "search": {
            "speedup": chosen["speedup"],
            "tokens_kept": chosen["tokens_kept"],
            "drops_pt": chosen["drops_pt"],
            "accuracy": chosen["accuracy"],
            "baseline_accuracy": report["baseline"]["accuracy"],
        },
    }


def write_default_file(report: dict[str, Any], command: str, data_dir: str | Path) -> Path:
    """The chosen config as the user's ``--prune tuned`` of the searched model from now on."""
    import json

    from prune.config import user_tuned_file

    record = tuned_record_of(report, command, data_dir)
    path = user_tuned_file(report["model"]["fingerprint"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
