"""The pruning config chosen by `jobs tune`, shipped with the package with its provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prune.config import PruneConfig

TUNED_FILE = Path(__file__).with_name("tuned_default.json")


def tuned_record(path: Path = TUNED_FILE) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `jobs tune --write-default` to create it")
    return json.loads(path.read_text())


def tuned_default(path: Path = TUNED_FILE) -> PruneConfig:
    """The shipped default pruning config (see tuned_default.json for data, date and command)."""
    cfg = tuned_record(path)["config"]
    return PruneConfig(int(cfg["min_tokens"]), float(cfg["quantile"]), int(cfg["layer"]), str(cfg["score"]))
