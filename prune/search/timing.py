"""Timing that survives CPU steal: interleaved repeats, medians, ratios to a baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Run every function once per repeat, in an order rotated each repeat; wall seconds per run."""
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        shift = rep % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratios(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Speed-up of each entry over the baseline: median(baseline) / median(entry)."""
    base = statistics.median(times[baseline])
    return {name: base / statistics.median(t) for name, t in times.items()}
