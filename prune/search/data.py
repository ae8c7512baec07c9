"""Intent datasets as JSONL splits ({"text", "label"} per line) in a data folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prune.datasets import DATASETS_DIR, read_split
from prune.errors import DataError
from prune.labels import OOS_LABEL

# BANKING77 (CC BY 4.0) and CLINC150 (CC BY 3.0), shipped with the package; each folder has its SOURCE.md
DEFAULT_DATA_DIR = DATASETS_DIR


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: list[int]) -> Split:
        return Split([self.texts[i] for i in index], [self.labels[i] for i in index])

    @property
    def has_oos(self) -> bool:
        return OOS_LABEL in self.labels


def load_split(data_dir: str | Path, dataset: str, split: str) -> Split:
    path = Path(data_dir) / dataset / f"{split}.jsonl"
    if not path.exists():
        raise DataError(f"{path} not found: {available(data_dir)}")
    return Split(*read_split(path))


def available(data_dir: str | Path) -> str:
    """What a data folder holds, for the error that names a missing dataset or split."""
    root = Path(data_dir)
    found = [
        f"{d.name} ({', '.join(sorted(p.stem for p in d.glob('*.jsonl')))})"
        for d in sorted(root.iterdir() if root.is_dir() else [])
        if d.is_dir() and any(d.glob("*.jsonl"))
    ]
    where = f"the data folder {root} (--data-dir, default the packaged {DEFAULT_DATA_DIR})"
    return f"{where} holds {'; '.join(found)}" if found else f"{where} holds no DATASET/SPLIT.jsonl files"


def has_split(data_dir: str | Path, dataset: str, split: str) -> bool:
    return (Path(data_dir) / dataset / f"{split}.jsonl").exists()
