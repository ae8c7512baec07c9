"""The pruning config chosen by `jobs tune`, shipped with the package with its provenance.

`jobs tune --write-default` writes the user's own choice to ``<JOBS_HOME>/tuned_default.json``,
which then wins over the packaged file (the package itself is never written)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prune.config import PruneConfig
from prune.errors import ConfigError
from prune.user_files import user_dir

PACKAGED_TUNED_FILE = Path(__file__).with_name("tuned_default.json")


def user_tuned_file() -> Path:
    return user_dir() / "tuned_default.json"


def tuned_file() -> Path:
    """The user's tuned config if `jobs tune --write-default` wrote one, else the packaged one."""
    user = user_tuned_file()
    return user if user.exists() else PACKAGED_TUNED_FILE


def tuned_record(path: Path | None = None) -> dict[str, Any]:
    path = path or tuned_file()
    if not path.exists():
        raise ConfigError(f"{path} is missing: run `jobs tune --write-default` to create it")
    return json.loads(path.read_text())


def tuned_default(path: Path | None = None) -> PruneConfig:
    """The shipped default pruning config (see tuned_default.json for data, date and command)."""
    cfg = tuned_record(path)["config"]
    return PruneConfig(int(cfg["min_tokens"]), float(cfg["quantile"]), int(cfg["layer"]), str(cfg["score"]))
