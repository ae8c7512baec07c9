"""The datasets shipped with this package, and how a split is read: BANKING77 (CC BY 4.0) and
CLINC150 (CC BY 3.0), each folder here with its SOURCE.md. Beside the runtime and the research
side alike: the encoder reads train texts (int8 calibration) and ``prune.search`` its tasks
from here, neither through the other."""

from __future__ import annotations

import json
from pathlib import Path

from prune.errors import DataError

DATASETS_DIR = Path(__file__).resolve().parent


def read_split(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a JSONL split ({"text": str, "label": str} per line), in file order."""
    texts, labels = [], []
    with path.open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), str):
                raise DataError(f'{path}:{n}: expected {{"text": str, "label": str}}, got {line[:80]!r}')
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels
