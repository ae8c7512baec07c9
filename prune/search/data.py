"""Intent datasets as JSONL splits ({"text", "label"} per line) in a data folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prune.datasets import DATASETS_DIR, read_split
from prune.errors import DataError

OOS_LABEL = "oos"
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
        raise DataError(
            f"{path} not found: expected {dataset}/{split}.jsonl under the data folder "
            f"(--data-dir, default {DEFAULT_DATA_DIR})"
        )
    return Split(*read_split(path))


def has_split(data_dir: str | Path, dataset: str, split: str) -> bool:
    return (Path(data_dir) / dataset / f"{split}.jsonl").exists()
