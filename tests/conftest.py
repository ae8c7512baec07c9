from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("JOBS_DATA_DIR", REPO.parent / "shared" / "datasets"))


def read_jsonl(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def banking_test() -> list[dict[str, str]]:
    path = DATA_DIR / "banking77" / "test.jsonl"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests expect ../shared/datasets beside the repository")
    return read_jsonl(path)


@pytest.fixture(scope="session")
def banking_texts(banking_test: list[dict[str, str]]) -> list[str]:
    return [r["text"] for r in banking_test]


@pytest.fixture(scope="session")
def encoder():
    from prune import Encoder

    return Encoder()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from prune.model import default_model_dir

    return default_model_dir()
