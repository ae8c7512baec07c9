"""Synthetic utterance logs for job tests: replicated BANKING77 test texts, several tenants."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import DATA_DIR


def banking_texts() -> list[str]:
    with (DATA_DIR / "banking77" / "test.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f]


def write_logs(
    folder: Path, files: int, rows_per_file: int, row_group: int, tenants: tuple[str, ...] = ("acme", "beta", "nobody")
) -> list[str]:
    """Parquet files with columns id, tenant, text; returns every id written."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = banking_texts()
    ids: list[str] = []
    for f in range(files):
        n0 = f * rows_per_file
        rid = [f"r{n0 + i:07d}" for i in range(rows_per_file)]
        pq.write_table(
            pa.table(
                {
                    "id": rid,
                    "tenant": [tenants[(n0 + i) % len(tenants)] for i in range(rows_per_file)],
                    "text": [texts[(n0 + i) % len(texts)] for i in range(rows_per_file)],
                }
            ),
            folder / f"logs-{f:02d}.parquet",
            row_group_size=row_group,
        )
        ids += rid
    return ids


def read_output_ids(folder: Path) -> list[str]:
    parts = sorted(folder.glob("part-*.parquet"))
    return [i for p in parts for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
