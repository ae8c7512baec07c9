"""Writing a query's record-batch stream as a terminal table, CSV, JSON Lines or Parquet."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FORMATS = ("table", "csv", "json", "parquet")
TABLE_ROWS = 50
CELL = 60


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    text = str(value).replace("\n", " ")
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def write_table(reader: pa.RecordBatchReader, out: IO[str], max_rows: int) -> int:
    """An aligned text table of the first ``max_rows`` rows; says so when there are more."""
    names = reader.schema.names
    rows: list[list[str]] = []
    more = False
    for batch in reader:
        for r in batch.to_pylist():
            if len(rows) == max_rows:
                more = True
                break
            rows.append([_cell(r[n]) for n in names])
        if more:
            break
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    out.write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    if more:
        out.write(f"(first {max_rows} rows shown; pass --limit N, or --format csv/json/parquet for every row)\n")
    else:
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    return len(rows)


def _write_batches(reader: pa.RecordBatchReader, writer: Any) -> int:
    """Stream every batch into an Arrow writer (CSV or Parquet); rows written."""
    n = 0
    with writer:
        for batch in reader:
            writer.write_batch(batch)
            n += batch.num_rows
    return n


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _as_json_text(column: pa.Array) -> pa.Array:
    """A nested (list, struct, map) or binary column as JSON text, as --format json writes its values."""
    return pa.array(
        [None if v is None else json.dumps(v, default=_json_value, ensure_ascii=False) for v in column.to_pylist()],
        pa.string(),
    )


def _csv_batches(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """The reader with the columns CSV has no type for (nested, binary) as JSON text: an input column
    such as a list of tags is kept in the output, and every format must read it."""
    nested = [i for i, f in enumerate(reader.schema) if _nested(f.type)]
    if not nested:
        return reader
    schema = reader.schema
    for i in nested:
        schema = schema.set(i, pa.field(schema.field(i).name, pa.string()))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            columns = [_as_json_text(c) if i in nested else c for i, c in enumerate(batch.columns)]
            yield pa.RecordBatch.from_arrays(columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def write_csv(reader: pa.RecordBatchReader, out: IO[bytes]) -> int:
    reader = _csv_batches(reader)
    return _write_batches(reader, pacsv.CSVWriter(out, reader.schema))


def _json_value(value: Any) -> Any:
    """Values JSON has no type for: exact decimals (e.g. DuckDB's sum of integers) as numbers, the rest as text."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """NaN and infinities as null: JSON has no such numbers (json.dumps would write Infinity)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def write_json_lines(reader: pa.RecordBatchReader, out: IO[str]) -> int:
    n = 0
    for batch in reader:
        for row in batch.to_pylist():
            out.write(json.dumps(_finite(row), default=_json_value, ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
    return n


def write_parquet(reader: pa.RecordBatchReader, path: str) -> int:
    return _write_batches(reader, pq.ParquetWriter(path, reader.schema))
