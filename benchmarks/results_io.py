"""What the benchmark scripts share: the Markdown accuracy table they print, and the JSON
record they write (always with the CPU model and its ISA flags, the commit and the date, since a
figure means nothing without them). Run the scripts as ``python benchmarks/NAME.py``: this folder
is then on the import path."""

from __future__ import annotations

import datetime
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from prune.cpu import cpu_flags, cpu_model

# the flags that decide our kernels: bf16 and int8 matmuls, AVX-512, AMX
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16")


def accuracy_table(first_column: str, results: dict[str, dict[str, float]]) -> str:
    """One row per variant, one column per cell (in the first variant's order), and the mean."""
    cells = list(next(iter(results.values())))
    lines = [f"| {first_column} | " + " | ".join(cells) + " | mean |", "|---|" + "---:|" * (len(cells) + 1)]
    for name, r in results.items():
        row = " | ".join(f"{r[c]:.1f}" for c in cells)
        lines.append(f"| {name} | {row} | {statistics.fmean(r.values()):.2f} |")
    return "\n".join(lines)


def write_record(out: Path | None, record: dict[str, Any]) -> None:
    """``record`` as indented JSON at ``out`` (nothing when ``out`` is None), after what makes a
    figure mean something: the CPU model and flags, the commit (``+dirty`` with local changes),
    the UTC date."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu": cpu_model(), "cpu_flags": sorted(cpu_flags() & set(ISA_FLAGS)), **_commit()}
    meta["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    out = _beside(out, meta["date"])
    out.write_text(json.dumps({**meta, **record}, indent=2))
    print(f"wrote {out}")


def _beside(out: Path, date: str) -> Path:
    """``out``, or where it exists (a committed record), a new name beside it: never overwritten."""
    if not out.exists():
        return out
    n = 1
    while (candidate := out.with_name(f"{out.stem}_{date}{f'_{n}' if n > 1 else ''}{out.suffix}")).exists():
        n += 1
    return candidate


def _commit() -> dict[str, str]:
    here = Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True)
    except OSError:
        return {}
    if head.returncode != 0:
        return {}
    return {"commit": head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")}
