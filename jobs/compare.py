"""Reading `_report.json` files and comparing runs side by side: figures, ratios, honesty warnings, a plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from jobs.errors import ReportError
from jobs.report import ran_dtypes
from workers.parquet_io import read_text, resolve

REPORT = "_report.json"


@dataclass(frozen=True)
class Run:
    label: str
    path: str
    report: dict[str, Any]


@dataclass(frozen=True)
class Figure:
    name: str
    get: Callable[[dict[str, Any]], float | None]
    fmt: str = "{:.1f}"
    higher_is_better: bool | None = True  # None: a count, not better or worse


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _actors(r: dict[str, Any], key: str) -> list[float]:
    return [float(a[key]) for a in r.get("actors", {}).values()]


FIGURES: tuple[Figure, ...] = (
    Figure("rows written", lambda r: r["rows"]["written"], "{:.0f}", None),
    Figure("wall s", lambda r: r["wall_s"], "{:.1f}", False),
    Figure("rows/s (job)", lambda r: r["rows_per_s"], "{:.1f}"),
    Figure("actors", lambda r: len(r.get("actors", {})), "{:.0f}", None),
    Figure("rows/s per actor (mean)", lambda r: _mean(_actors(r, "rows_per_s")), "{:.1f}"),
    Figure("busy rows/s per actor (mean)", lambda r: _mean(_actors(r, "busy_rows_per_s")), "{:.1f}"),
    Figure("tokens kept %", lambda r: r["tokens_kept_pct"], "{:.1f}", None),
    Figure("encode % of unit time", lambda r: r["time_split_pct"].get("encode_s"), "{:.1f}", None),
    Figure("unit latency p50 s", lambda r: r["unit_latency_s"]["p50"], "{:.3f}", False),
    Figure("unit latency p95 s", lambda r: r["unit_latency_s"]["p95"], "{:.3f}", False),
    Figure("driver max RSS MB", lambda r: r.get("driver_max_rss_mb"), "{:.0f}", False),
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
    missing = [k for k in ("rows", "wall_s", "rows_per_s", "config", "actors") if k not in report]
    if missing:
        raise ReportError(f"{path}: not a classify job report (missing {', '.join(missing)})")
    label = PurePosixPath(resolve(folder)[1]).name if name == REPORT else PurePosixPath(name).stem
    return Run(label or str(report.get("job_id", path)), path, report)


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
            except (KeyError, TypeError):
                v = None
            values.append(None if v is None else float(v))
        out.append((f, values))
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base not in (None, 0) else None


def warnings(runs: list[Run]) -> list[str]:
    """What differs besides the thing being compared, so that a ratio is read honestly."""
    first = runs[0].report
    out: list[str] = []
    for r in runs[1:]:
        rep = r.report
        for key in CONFIG_KEYS:
            a, b = first["config"].get(key), rep["config"].get(key)
            if a != b:
                out.append(f"config differs: {key} is {a!r} in {runs[0].label}, {b!r} in {r.label}")
        a, b = ran_dtypes(first), ran_dtypes(rep)
        if a != b:
            out.append(f"actors ran a different dtype: {a} in {runs[0].label}, {b} in {r.label}")
        for key in ("cpu", "cpus", "memory_gib"):
            a, b = first.get("hardware", {}).get(key), rep.get("hardware", {}).get(key)
            if a != b:
                out.append(f"hardware differs: {key} is {a!r} in {runs[0].label}, {b!r} in {r.label}")
        for key in sorted(set(first.get("versions", {})) | set(rep.get("versions", {}))):
            a, b = first.get("versions", {}).get(key), rep.get("versions", {}).get(key)
            if a != b:
                out.append(f"versions differ: {key} {a} in {runs[0].label}, {b} in {r.label}")
        if first["rows"].get("planned") != rep["rows"].get("planned") or first.get("input") != rep.get("input"):
            out.append(f"input differs: {runs[0].label} and {r.label} classified different data")
        if rep.get("dead_units") or rep["rows"].get("written") != rep["rows"].get("planned"):
            out.append(
                f"{r.label} did not complete ({rep['rows'].get('written')} of {rep['rows'].get('planned')} rows)"
            )
    if first.get("dead_units") or first["rows"].get("written") != first["rows"].get("planned"):
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
    r = run.report
    c = r["config"]
    lines = [
        f"job {r.get('job_id')} ({run.label}), finished {r.get('finished')}",
        f"input {r.get('input')} -> output {r.get('output')}",
        f"rows {r['rows']['written']} of {r['rows']['planned']} planned ({r['rows'].get('dead', 0)} dead-lettered), "
        f"units {r['units']['done']}/{r['units']['total']}",
        f"statuses {r.get('statuses')}",
        f"wall {r['wall_s']:.1f}s, {r['rows_per_s']:.1f} rows/s, tokens kept {r['tokens_kept_pct']:.1f}%",
        "unit time split: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f}%" for k, v in r.get("time_split_pct", {}).items()),
        f"unit latency p50 {r['unit_latency_s']['p50']:.3f}s, p95 {r['unit_latency_s']['p95']:.3f}s",
        f"config: model {c.get('model')} ({c.get('fingerprint')}), prune {c.get('prune')}, "
        f"{c.get('dtype')} (ran {ran_dtypes(r)}), "
        f"{c.get('actors')} actors x {c.get('cpus_per_actor')} CPUs, {c.get('unit_rows')} rows per unit",
        f"hardware: {r.get('hardware', {}).get('cpu')}, {r.get('hardware', {}).get('cpus')} CPUs",
        f"driver max RSS {r.get('driver_max_rss_mb', 0):.0f} MB",
        "actors:",
    ]
    for name, a in r.get("actors", {}).items():
        lines.append(
            f"  {name}: {a['rows']} rows in {a['units']} units, {a['rows_per_s']:.1f} rows/s "
            f"({a['busy_rows_per_s']:.1f} while busy), max RSS {a['max_rss_mb']:.0f} MB, node {a['node'][:12]}"
        )
    for d in r.get("dead_units", []):
        lines.append(f"dead unit {d['unit']}: {d['error'].splitlines()[0] if d['error'] else ''}")
    return "\n".join(lines)


def plot(runs: list[Run], path: str) -> None:
    """rows/s per run, rows/s per actor, and tokens kept %, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = labels(runs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].bar(names, [r.report["rows_per_s"] for r in runs], color="tab:blue")
    axes[0].set_title("job rows/s")
    width = 0.8 / max(len(r.report.get("actors", {})) for r in runs)
    for i, r in enumerate(runs):
        for j, a in enumerate(r.report.get("actors", {}).values()):
            label = f"actor {j}" if i == 0 else None
            axes[1].bar(i + j * width, a["busy_rows_per_s"], width, color=f"C{j}", label=label)
    axes[1].set_xticks([i + 0.4 - width / 2 for i in range(len(runs))], names)
    axes[1].set_title("rows/s per actor (while busy)")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize="small")
    axes[2].bar(names, [r.report["tokens_kept_pct"] for r in runs], color="tab:green")
    axes[2].set_ylim(0, 100)
    axes[2].set_title("tokens kept %")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
