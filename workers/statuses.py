"""The per-row statuses of a classify job's output: a leaf module, so the CLI can check a
``--status`` filter without importing the encoder."""

from __future__ import annotations

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
