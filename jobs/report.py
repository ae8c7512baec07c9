"""The throughput report of a classify job (`_report.json`)."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from typing import Any

import numpy as np

from jobs.plan import Plan
from prune.cpu import cpu_model, native_bf16
from workers.connection import redact
from workers.memory import peak_rss_mb

REPORT_VERSION = 1


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("fewshot-jobs", "torch", "transformers", "ray", "pyarrow", "redis", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def ran_dtypes(report: dict[str, Any]) -> str:
    """The dtype(s) the job's actors ran, from the placement (``--dtype auto`` is resolved per node)."""
    return "/".join(sorted({str(p.get("dtype")) for p in report.get("placement", [])})) or "unknown"


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


def _group(stats: list[dict[str, Any]], key: str, wall: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for s in stats:
        g = out.setdefault(str(s[key]), {"units": 0, "rows": 0, "busy_s": 0.0, "encode_s": 0.0, "max_rss_mb": 0.0})
        g["units"] += 1
        g["rows"] += s["rows"]
        spans.setdefault(str(s[key]), []).append((s["finished"] - s["total_s"], s["finished"]))
        g["encode_s"] += s["encode_s"]
        g["max_rss_mb"] = max(g["max_rss_mb"], s.get("rss_mb", 0.0))
        if key == "actor":
            g["node"] = s["node"]
    for name, g in out.items():
        g["busy_s"] = busy_seconds(spans[name])
        g["rows_per_s"] = g["rows"] / wall if wall else 0.0  # its share of the job's throughput
        g["busy_rows_per_s"] = g["rows"] / g["busy_s"] if g["busy_s"] else 0.0  # while working on units
    return out


def build_report(
    job_id: str,
    spec: Any,
    plan: Plan,
    done: dict[str, dict[str, Any]],
    dead: list[dict[str, Any]],
    infos: list[dict[str, Any]],
    wall: float,
    redis_url: str,
) -> dict[str, Any]:
    stats = list(done.values())
    planned = {u.id: u.rows for u in plan.units}
    rows_written = sum(planned.get(u, 0) for u in done)
    dead_ids = {d["unit"] for d in dead} - set(done)
    statuses: dict[str, int] = {}
    for s in stats:
        for k, v in s["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    tokens = sum(s["tokens"] for s in stats)
    kept = sum(s["tokens_kept"] for s in stats)
    latency = np.array([s["total_s"] for s in stats]) if stats else np.zeros(1)
    split = {k: sum(s[k] for s in stats) for k in ("read_s", "encode_s", "classify_s", "write_s", "total_s")}
    split["head_s"] = split.pop("classify_s") - split["encode_s"]  # classify_s includes the encoding
    split = {k: split[k] for k in ("read_s", "encode_s", "head_s", "write_s", "total_s")}
    fingerprint = next((i["fingerprint"] for i in infos if "fingerprint" in i), None)
    return {
        "report_version": REPORT_VERSION,
        "job_id": job_id,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": spec.input,
        "output": spec.output,
        "files": len(plan.files),
        "empty_files": list(plan.empty_files),
        "units": {"total": len(plan.units), "done": len(done), "dead": len(dead_ids)},
        "rows": {"planned": plan.rows, "written": rows_written, "dead": sum(planned.get(u, 0) for u in dead_ids)},
        "statuses": dict(sorted(statuses.items())),
        "tokens": tokens,
        "tokens_kept": kept,
        "tokens_kept_pct": 100.0 * kept / tokens if tokens else 100.0,
        "wall_s": wall,
        "rows_per_s": rows_written / wall if wall else 0.0,
        "time_split_s": split,
        "time_split_pct": {
            k: 100.0 * v / split["total_s"] if split["total_s"] else 0.0 for k, v in split.items() if k != "total_s"
        },
        "unit_latency_s": {
            "p50": float(np.percentile(latency, 50)),
            "p95": float(np.percentile(latency, 95)),
            "max": float(latency.max()),
        },
        "actors": _group(stats, "actor", wall),
        "nodes": _group(stats, "node", wall),
        "placement": [{k: i.get(k) for k in ("actor", "node", "host", "pid", "dtype")} for i in infos],
        "dead_units": [{"unit": d["unit"], "error": d["error"]} for d in dead if d["unit"] in dead_ids],
        "config": {
            "model": spec.model or "packaged all-MiniLM-L6-v2",
            "fingerprint": fingerprint,
            "prune": spec.prune,
            "dtype": spec.dtype,
            "token_budget": spec.token_budget,
            "actors": spec.actors,
            "cpus_per_actor": spec.cpus_per_actor,
            "unit_rows": spec.unit_rows,
            "text_column": spec.columns.text,
            "tenant_column": spec.columns.tenant,
            "tenant": spec.columns.fixed_tenant,
            "redis": redact(redis_url),
        },
        "driver_max_rss_mb": peak_rss_mb(),
        "hardware": hardware(),
        "versions": _versions(),
    }
