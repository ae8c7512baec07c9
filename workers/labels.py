"""What a classify job adds to every input row: the output columns and the row statuses. No
encoder here, so the driver and the CLI use them without importing torch."""

from __future__ import annotations

import pyarrow as pa

from workers.input_columns import normalized

OK, OUT_OF_SCOPE, UNKNOWN_TENANT, EMPTY_TEXT, MODEL_MISMATCH = (
    "ok",
    "out_of_scope",
    "unknown_tenant",
    "empty_text",
    "model_mismatch",
)
INVALID_TEXT = "invalid_text"  # bytes that are not UTF-8: written with U+FFFD in their place
NO_TOKENS = "no_tokens"  # a text the tokenizer reduces to nothing (zero-width or control characters)
STATUSES = (OK, OUT_OF_SCOPE, UNKNOWN_TENANT, EMPTY_TEXT, MODEL_MISMATCH, INVALID_TEXT, NO_TOKENS)
OUTPUT_FIELDS = [
    pa.field("intent", pa.string()),
    pa.field("score", pa.float32()),
    pa.field("margin", pa.float32()),
    pa.field("status", pa.string()),
    pa.field("tokens", pa.int32()),
    pa.field("tokens_kept", pa.int32()),
]
EMPTY_PART = "empty"  # the part-file id of a job whose input has no rows


def empty_part(input_schema: pa.Schema, string_columns: tuple[str, ...]) -> pa.Table:
    """Zero rows with the columns a unit's part file has (the input's, made uniform, then the
    output's): a job over empty files leaves an output that readers open like any other."""
    table = normalized(input_schema.empty_table(), string_columns)
    for f in OUTPUT_FIELDS:
        table = table.append_column(f, pa.array([], f.type))
    return table
