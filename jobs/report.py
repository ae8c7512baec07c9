"""The throughput report of a classify job (`_report.json`)."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from typing import Any

import numpy as np

from jobs.plan import Plan
from jobs.report_schema import PLACEMENT_FIELDS, DeadUnit, Latency, Placement, Report, RowCounts, Share, UnitCounts
from prune.cpu import cpu_model, native_bf16
from workers.connection import redact
from workers.job_spec import JobSpec
from workers.memory import peak_rss_mb
from workers.unit import UnitStats


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("fewshot-jobs", "torch", "transformers", "ray", "pyarrow", "redis", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def hardware() -> dict[str, Any]:
    import os

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "bf16_native": native_bf16(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
    }


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Wall time covered by at least one of the (start, end) intervals: an actor whose streams
    work on two units at once is busy once, not twice."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _group(stats: list[UnitStats], key: str, wall: float) -> dict[str, Share]:
    """Per actor (or node): its units, rows, busy time and memory."""
    groups: dict[str, list[UnitStats]] = {}
    for s in stats:
        groups.setdefault(str(getattr(s, key)), []).append(s)
    out = {}
    for name, mine in groups.items():
        rows = sum(s.rows for s in mine)
        busy = busy_seconds([(s.finished - s.total_s, s.finished) for s in mine])
        out[name] = Share(
            units=len(mine),
            rows=rows,
            busy_s=busy,
            encode_s=sum(s.encode_s for s in mine),
            max_rss_mb=max(s.rss_mb for s in mine),
            rows_per_s=rows / wall if wall else 0.0,
            busy_rows_per_s=rows / busy if busy else 0.0,
            node=mine[0].node if key == "actor" else None,
        )
    return out


def _time_split(stats: list[UnitStats]) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds spent reading, encoding, in the heads and writing, summed over units, and as % of unit time."""
    split = {k: sum(getattr(s, k) for s in stats) for k in ("read_s", "encode_s", "head_s", "write_s", "total_s")}
    total = split["total_s"]
    return split, {k: 100.0 * v / total if total else 0.0 for k, v in split.items() if k != "total_s"}


def _latency(stats: list[UnitStats]) -> Latency:
    latency = np.array([s.total_s for s in stats]) if stats else np.zeros(1)
    return Latency(
        p50=float(np.percentile(latency, 50)), p95=float(np.percentile(latency, 95)), max=float(latency.max())
    )


def _config(spec: JobSpec, fingerprint: str | None, redis_url: str) -> dict[str, Any]:
    return {
        "model": spec.model or "packaged all-MiniLM-L6-v2",
        "fingerprint": fingerprint,
        "prune": spec.prune.to_dict() if spec.prune else None,
        "dtype": spec.dtype,
        "token_budget": spec.token_budget,
        "actors": spec.actors,
        "cpus_per_actor": spec.cpus_per_actor,
        "rows_per_actor": spec.rows_per_actor,
        "unit_rows": spec.unit_rows,
        "text_column": spec.columns.text,
        "tenant_column": spec.columns.tenant,
        "tenant": spec.columns.fixed_tenant,
        "redis": redact(redis_url),
    }


def build_report(
    job_id: str,
    spec: JobSpec,
    plan: Plan,
    done: dict[str, UnitStats],
    dead: list[dict[str, Any]],
    infos: list[dict[str, Any]],
    wall: float,
    redis_url: str,
) -> Report:
    stats = list(done.values())
    planned = {u.id: u.rows for u in plan.units}
    rows_written = sum(planned.get(u, 0) for u in done)
    dead_ids = {d["unit"] for d in dead} - set(done)
    statuses: dict[str, int] = {}
    for s in stats:
        for k, v in s.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    tokens, kept = sum(s.tokens for s in stats), sum(s.tokens_kept for s in stats)
    split, split_pct = _time_split(stats)
    fingerprint = next((i["fingerprint"] for i in infos if "fingerprint" in i), None)
    return Report(
        job_id=job_id,
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        input=redact(spec.input),
        output=redact(spec.output),
        files=len(plan.files),
        empty_files=list(plan.empty_files),
        units=UnitCounts(total=len(plan.units), done=len(done), dead=len(dead_ids)),
        rows=RowCounts(planned=plan.rows, written=rows_written, dead=sum(planned.get(u, 0) for u in dead_ids)),
        statuses=dict(sorted(statuses.items())),
        tokens=tokens,
        tokens_kept=kept,
        tokens_kept_pct=100.0 * kept / tokens if tokens else 100.0,
        wall_s=wall,
        rows_per_s=rows_written / wall if wall else 0.0,
        time_split_s=split,
        time_split_pct=split_pct,
        unit_latency_s=_latency(stats),
        actors=_group(stats, "actor", wall),
        nodes=_group(stats, "node", wall),
        placement=[Placement(**{k: i.get(k) for k in PLACEMENT_FIELDS}) for i in infos],
        dead_units=[DeadUnit(unit=d["unit"], error=d["error"]) for d in dead if d["unit"] in dead_ids],
        config=_config(spec, fingerprint, redis_url),
        driver_max_rss_mb=peak_rss_mb(),
        hardware=hardware(),
        versions=_versions(),
    )
