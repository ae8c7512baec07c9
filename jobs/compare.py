"""Reading `_report.json` files and comparing runs side by side: figures, ratios, honesty warnings, a plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from jobs.errors import ReportError
from jobs.report_schema import Report
from workers.parquet_io import read_text, resolve

REPORT = "_report.json"


@dataclass(frozen=True)
class Run:
    label: str
    path: str
    report: Report


@dataclass(frozen=True)
class Figure:
    name: str
    get: Callable[[Report], float | None]
    fmt: str = "{:.1f}"
    higher_is_better: bool | None = True  # None: a count, not better or worse


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _actors(r: Report, key: str) -> list[float]:
    return [float(getattr(a, key)) for a in r.actors.values()]


FIGURES: tuple[Figure, ...] = (
    Figure("rows written", lambda r: r.rows.written, "{:.0f}", None),
    Figure("wall s", lambda r: r.wall_s, "{:.1f}", False),
    Figure("rows/s (job)", lambda r: r.rows_per_s, "{:.1f}"),
    Figure("actors", lambda r: len(r.actors), "{:.0f}", None),
    Figure("rows/s per actor (mean)", lambda r: _mean(_actors(r, "rows_per_s")), "{:.1f}"),
    Figure("busy rows/s per actor (mean)", lambda r: _mean(_actors(r, "busy_rows_per_s")), "{:.1f}"),
    Figure("tokens kept %", lambda r: r.tokens_kept_pct, "{:.1f}", None),
    Figure("encode % of unit time", lambda r: r.time_split_pct.get("encode_s"), "{:.1f}", None),
    Figure("unit latency p50 s", lambda r: r.unit_latency_s.p50, "{:.3f}", False),
    Figure("unit latency p95 s", lambda r: r.unit_latency_s.p95, "{:.3f}", False),
    Figure("driver max RSS MB", lambda r: r.driver_max_rss_mb, "{:.0f}", False),
    Figure("actor max RSS MB", lambda r: max(_actors(r, "max_rss_mb"), default=None), "{:.0f}", False),
)
CONFIG_KEYS = ("model", "fingerprint", "prune", "dtype", "token_budget", "actors", "cpus_per_actor", "unit_rows")


def load(path: str) -> Run:
    """A run from its `_report.json` (any name ending in .json), or from the job's output folder."""
    folder, name = (path.rsplit("/", 1) if "/" in path else (".", path)) if path.endswith(".json") else (path, REPORT)
    text = read_text(folder, name)
    if text is None:
        raise ReportError(f"{path}: no such report; expected a _report.json file or a finished job's --output folder")
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(report, dict):
        raise ReportError(f"{path}: not a classify job report (a JSON {type(report).__name__}, expected an object)")
    typed = Report.from_dict(report, path)
    label = PurePosixPath(resolve(folder)[1]).name if name == REPORT else PurePosixPath(name).stem
    return Run(label or str(typed.job_id or path), path, typed)


def labels(runs: list[Run]) -> list[str]:
    """Run labels made unique (two folders with the same name get #2, #3)."""
    out: list[str] = []
    for r in runs:
        label, n = r.label, 2
        while label in out:
            label, n = f"{r.label}#{n}", n + 1
        out.append(label)
    return out


def figure_values(runs: list[Run]) -> list[tuple[Figure, list[float | None]]]:
    out = []
    for f in FIGURES:
        values: list[float | None] = []
        for r in runs:
            try:
                v = f.get(r.report)
            except (KeyError, TypeError, AttributeError):
                v = None
            values.append(None if v is None else float(v))
        out.append((f, values))
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base not in (None, 0) else None


def _differences(first: Run, other: Run) -> list[str]:
    a, b = first.report, other.report
    out = [
        f"config differs: {key} is {a.config.get(key)!r} in {first.label}, {b.config.get(key)!r} in {other.label}"
        for key in CONFIG_KEYS
        if a.config.get(key) != b.config.get(key)
    ]
    if a.ran_dtypes() != b.ran_dtypes():
        ran = f"{a.ran_dtypes()} in {first.label}, {b.ran_dtypes()} in {other.label}"
        out.append(f"actors ran a different dtype: {ran}")
    out += [
        f"hardware differs: {key} is {a.hardware.get(key)!r} in {first.label}, {b.hardware.get(key)!r} in {other.label}"
        for key in ("cpu", "cpus", "memory_gib")
        if a.hardware.get(key) != b.hardware.get(key)
    ]
    out += [
        f"versions differ: {key} {a.versions.get(key)} in {first.label}, {b.versions.get(key)} in {other.label}"
        for key in sorted(set(a.versions) | set(b.versions))
        if a.versions.get(key) != b.versions.get(key)
    ]
    if a.rows.planned != b.rows.planned or a.input != b.input:
        out.append(f"input differs: {first.label} and {other.label} classified different data")
    if not b.complete:
        out.append(f"{other.label} did not complete ({b.rows.written} of {b.rows.planned} rows)")
    return out


def warnings(runs: list[Run]) -> list[str]:
    """What differs besides the thing being compared, so that a ratio is read honestly."""
    out = [w for r in runs[1:] for w in _differences(runs[0], r)]
    if not runs[0].report.complete:
        out.append(f"{runs[0].label} did not complete")
    return out


def compare_table(runs: list[Run]) -> str:
    """Markdown: one row per figure, a column per run and a ratio column per run after the first."""
    names = labels(runs)
    head = ["figure", names[0]]
    for n in names[1:]:
        head += [n, "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for f, values in figure_values(runs):
        cells = [f.name, _fmt(f, values[0])]
        for v in values[1:]:
            q = ratio(v, values[0])
            cells += [_fmt(f, v), "" if q is None else f"{q:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(f: Figure, v: float | None) -> str:
    return "n/a" if v is None else f.fmt.format(v)


def show(run: Run) -> str:
    """One report as readable text."""
    r, c = run.report, run.report.config
    lines = [
        f"job {r.job_id} ({run.label}), finished {r.finished}",
        f"input {r.input} -> output {r.output}",
        f"rows {r.rows.written} of {r.rows.planned} planned ({r.rows.dead} dead-lettered), "
        f"units {r.units.done}/{r.units.total}",
        f"statuses {r.statuses}",
        f"wall {r.wall_s:.1f}s, {r.rows_per_s:.1f} rows/s, tokens kept {r.tokens_kept_pct:.1f}%",
        "unit time split: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}%" for k, v in r.time_split_pct.items()),
        f"unit latency p50 {r.unit_latency_s.p50:.3f}s, p95 {r.unit_latency_s.p95:.3f}s",
        f"config: model {c.get('model')} ({c.get('fingerprint')}), prune {c.get('prune')}, "
        f"{c.get('dtype')} (ran {r.ran_dtypes()}), "
        f"{c.get('actors')} actors x {c.get('cpus_per_actor')} CPUs, {c.get('unit_rows')} rows per unit",
        f"hardware: {r.hardware.get('cpu')}, {r.hardware.get('cpus')} CPUs",
        f"driver max RSS {r.driver_max_rss_mb or 0:.0f} MB",
        "actors:",
    ]
    for name, a in r.actors.items():
        lines.append(
            f"  {name}: {a.rows} rows in {a.units} units, {a.rows_per_s:.1f} rows/s "
            f"({a.busy_rows_per_s:.1f} while busy), max RSS {a.max_rss_mb:.0f} MB, node {(a.node or '')[:12]}"
        )
    for d in r.dead_units:
        lines.append(f"dead unit {d.unit}: {d.error.splitlines()[0] if d.error else ''}")
    return "\n".join(lines)


def plot(runs: list[Run], path: str) -> None:
    """rows/s per run, rows/s per actor, and tokens kept %, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = labels(runs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(names, [r.report.rows_per_s for r in runs], color="tab:blue")
    axes[0].set_title("job rows/s")
    width = 0.8 / max(max(len(r.report.actors) for r in runs), 1)
    for i, r in enumerate(runs):
        for j, a in enumerate(r.report.actors.values()):
            label = f"actor {j}" if i == 0 else None
            axes[1].bar(i + j * width, a.busy_rows_per_s, width, color=f"C{j}", label=label)
    axes[1].set_xticks([i + 0.4 - width / 2 for i in range(len(runs))], names)
    axes[1].set_title("rows/s per actor (while busy)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize="small")
    axes[2].bar(names, [r.report.tokens_kept_pct for r in runs], color="tab:green")
    axes[2].set_ylim(0, 100)
    axes[2].set_title("tokens kept %")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
