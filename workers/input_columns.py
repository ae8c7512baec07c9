"""A unit's input columns made uniform: the output schema never depends on how the input was
written, and a row whose bytes are not text gets a status instead of failing its unit."""

from __future__ import annotations

import pyarrow as pa


def part_type(t: pa.DataType) -> pa.DataType:
    """The type an input column of type ``t`` has in the part files (text and tenant aside)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_large_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def combined_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """The one schema that part files of these schemas are read with (``jobs query``); raises
    ValueError when some column's types do not combine."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(str(exc)) from exc


def normalized(table: pa.Table, string_columns: tuple[str, ...] = ()) -> pa.Table:
    """Dictionary (categorical) columns decoded to their values and large strings as strings, so
    files written by pandas, pyarrow or Spark give part files of one schema. ``string_columns``
    (text, tenant) are strings even when a file holds only nulls there."""
    for i, f in enumerate(table.schema):
        want = pa.string() if f.name in string_columns else part_type(f.type)
        if f.type != want:
            table = table.set_column(i, pa.field(f.name, want, f.nullable, f.metadata), table.column(i).cast(want))
    return table


def decode_strings(column: pa.ChunkedArray) -> tuple[list[str | None], set[int], pa.ChunkedArray | None]:
    """The values as Python strings. Rows whose bytes are not valid UTF-8 come back as None, with
    their row numbers, and a repaired column (invalid bytes as U+FFFD) to write in their place;
    the repaired column is None when every row decoded."""
    try:
        return column.to_pylist(), set(), None
    except UnicodeDecodeError:
        pass
    raw: list[bytes | None] = column.cast(pa.binary()).to_pylist()
    values: list[str | None] = []
    repaired: list[str | None] = []
    bad: set[int] = set()
    for i, b in enumerate(raw):
        if b is None:
            values.append(None)
            repaired.append(None)
            continue
        try:
            values.append(b.decode("utf-8"))
            repaired.append(values[-1])
        except UnicodeDecodeError:
            bad.add(i)
            values.append(None)
            repaired.append(b.decode("utf-8", errors="replace"))
    return values, bad, pa.chunked_array([pa.array(repaired, pa.string())])
