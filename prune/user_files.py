"""The user's own folder for files that `jobs tune` and `jobs train-scorer` write: never the
installed package, which may be read-only and is replaced on upgrade."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "JOBS_HOME"


def user_dir() -> Path:
    """``$JOBS_HOME``, else ``$XDG_DATA_HOME/fewshot-jobs``, else ``~/.local/share/fewshot-jobs``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "fewshot-jobs"
