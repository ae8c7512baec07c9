"""Where the datasets shipped with this package live: BANKING77 (CC BY 4.0) and CLINC150
(CC BY 3.0), each folder with its SOURCE.md. A leaf, so the encoder can read train texts (int8
calibration) without importing the research side (``prune.search``)."""

from __future__ import annotations

import json
from pathlib import Path

DATASETS_DIR = Path(__file__).resolve().parent / "search" / "datasets"


def texts(dataset: str, split: str) -> list[str]:
    """The texts of a shipped split, in file order."""
    with (DATASETS_DIR / dataset / f"{split}.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f if line.strip()]
