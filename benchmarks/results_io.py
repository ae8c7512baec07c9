"""What the benchmark scripts share: the Markdown accuracy table they print, and the JSON
record they write (always with the CPU model, since a figure means nothing without it). Run the
scripts as ``python benchmarks/NAME.py``: this folder is then on the import path."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from prune.cpu import cpu_model


def accuracy_table(first_column: str, results: dict[str, dict[str, float]]) -> str:
    """One row per variant, one column per cell (in the first variant's order), and the mean."""
    cells = list(next(iter(results.values())))
    lines = [f"| {first_column} | " + " | ".join(cells) + " | mean |", "|---|" + "---:|" * (len(cells) + 1)]
    for name, r in results.items():
        row = " | ".join(f"{r[c]:.1f}" for c in cells)
        lines.append(f"| {name} | {row} | {statistics.fmean(r.values()):.2f} |")
    return "\n".join(lines)


def write_record(out: Path | None, record: dict[str, Any]) -> None:
    """``{"cpu": ..., **record}`` as indented JSON at ``out`` (nothing when ``out`` is None)."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), **record}, indent=2))
