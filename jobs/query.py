"""Queries over a job's labelled Parquet output, through DuckDB, streamed in record batches.

The part files (local or any pyarrow filesystem URI) become one Arrow dataset that DuckDB scans
lazily as the view ``labelled``, already narrowed by the filters; a query reads only the columns
and row groups it needs and hands back batches, so an output of any size is never held in memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jobs.errors import QueryError
from workers.input_columns import combined_schema
from workers.parquet_io import resolve

VIEW = "labelled"
BATCH_ROWS = 8192
_OPS = ("<=", ">=", "!=", "=", "<", ">", "~")
_WHERE = re.compile(r"^\s*([^<>=!~]+?)\s*(<=|>=|!=|==|=|<|>|~)\s*(.*?)\s*$", re.S)


@dataclass(frozen=True)
class Predicate:
    """``COLUMN OP VALUE``; OP one of = != < <= > >= and ~ (case-insensitive substring)."""

    column: str
    op: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Predicate:
        m = _WHERE.match(text)
        if not m or not m.group(3):
            raise QueryError(
                f"--where {text!r}: expected COLUMN OP VALUE with OP one of {' '.join(_OPS)} "
                f"(e.g. --where 'channel=web' or --where 'tokens>=20')"
            )
        op = "=" if m.group(2) == "==" else m.group(2)
        value = m.group(3)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return cls(m.group(1).strip(), op, value)


@dataclass(frozen=True)
class Filters:
    tenants: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    where: tuple[Predicate, ...] = field(default_factory=tuple)
    tenant_column: str = "tenant"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QueryError(f"expected a finite number, got {value!r}")
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def part_files(output: str) -> tuple[pafs.FileSystem, list[str]]:
    """The Parquet files of a job output folder (part-*.parquet), or the one file given."""
    fs, path = resolve(output)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return fs, [path]
    if info.type != pafs.FileType.Directory:
        raise QueryError(f"{output}: no such file or folder; expected a job output folder holding part-*.parquet")
    files = sorted(
        i.path
        for i in fs.get_file_info(pafs.FileSelector(path))
        if i.type == pafs.FileType.File and i.base_name.startswith("part-") and i.base_name.endswith(".parquet")
    )
    if not files:
        raise QueryError(f"{output}: no part-*.parquet files; expected the --output folder of a classify job")
    return fs, files


def finished(output: str) -> bool:
    fs, path = resolve(output)
    return fs.get_file_info(path.rstrip("/") + "/_SUCCESS").type == pafs.FileType.File


def open_dataset(output: str) -> ds.Dataset:
    fs, files = part_files(output)
    schemas = []
    for f in files:
        try:
            with fs.open_input_file(f) as handle:
                schemas.append(pq.read_schema(handle).remove_metadata())
        except (pa.ArrowInvalid, OSError) as exc:
            raise QueryError(f"{f}: not a readable Parquet file ({exc})") from exc
    try:
        schema = combined_schema(schemas)
    except ValueError as exc:
        raise QueryError(f"{output}: the part files have incompatible schemas ({exc})") from exc
    return ds.dataset(files, schema=schema, filesystem=fs, format="parquet")


def _require(schema: pa.Schema, column: str, why: str) -> pa.DataType:
    if column not in schema.names:
        raise QueryError(f"{why}: no column {column!r} in the output; columns are: {', '.join(schema.names)}")
    return schema.field(column).type


def _typed(value: str, kind: pa.DataType, pred: Predicate) -> Any:
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        try:
            number = float(value)
        except ValueError:
            raise QueryError(
                f"--where {pred.column}{pred.op}{value}: column {pred.column!r} is numeric ({kind}); "
                f"expected a number, found {value!r}"
            ) from None
        return int(number) if pa.types.is_integer(kind) and number.is_integer() else number
    if pa.types.is_boolean(kind):
        if value.lower() not in ("true", "false"):
            raise QueryError(f"--where {pred.column}{pred.op}{value}: expected true or false, found {value!r}")
        return value.lower() == "true"
    return value


def where_clause(schema: pa.Schema, f: Filters) -> str:
    """The filters as one SQL condition; columns checked, literals quoted (never spliced raw)."""
    terms: list[str] = []

    def one_of(column: str, values: tuple[str, ...], why: str) -> None:
        if values:
            _require(schema, column, why)
            terms.append(f"{ident(column)} IN ({', '.join(literal(v) for v in values)})")

    one_of(f.tenant_column, f.tenants, "--tenant (a job run with one --tenant has no tenant column)")
    one_of("intent", f.intents, "--intent")
    one_of("status", f.statuses, "--status")
    for bound, op in ((f.min_score, ">="), (f.max_score, "<=")):
        if bound is not None:
            _require(schema, "score", "--min-score/--max-score")
            terms.append(f'"score" {op} {literal(float(bound))}')
    for p in f.where:
        kind = _require(schema, p.column, f"--where {p.column}{p.op}{p.value}")
        if p.op == "~":
            terms.append(f"contains(lower(CAST({ident(p.column)} AS VARCHAR)), {literal(p.value.lower())})")
        else:
            terms.append(f"{ident(p.column)} {p.op} {literal(_typed(p.value, kind, p))}")
    return " AND ".join(terms) or "TRUE"


def select_sql(
    schema: pa.Schema, columns: Sequence[str] = (), count_by: Sequence[str] = (), limit: int | None = None
) -> str:
    """The query of the filter options: a projection, or grouped counts (largest first)."""
    for c in (*columns, *count_by):
        _require(schema, c, "--columns/--count-by")
    if count_by:
        keys = ", ".join(ident(c) for c in count_by)
        sql = f"SELECT {keys}, count(*) AS rows FROM {VIEW} GROUP BY {keys} ORDER BY rows DESC, {keys}"
    else:
        sql = f"SELECT {', '.join(ident(c) for c in columns) or '*'} FROM {VIEW}"
    return sql + (f" LIMIT {int(limit)}" if limit is not None else "")


class Query:
    """A DuckDB connection with the output registered and the view ``labelled`` defined."""

    def __init__(self, output: str, filters: Filters = Filters()) -> None:
        import duckdb

        self.dataset = open_dataset(output)
        self.schema = self.dataset.schema
        condition = where_clause(self.schema, filters)
        self.con = duckdb.connect()
        self.con.register("_parts", self.dataset)
        self.con.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM _parts WHERE {condition}")
        self.con.execute("SET enable_external_access = false")  # --sql sees the output, not the file system

    def reader(self, sql: str) -> pa.RecordBatchReader:
        """The result of one read-only SELECT as a stream of record batches."""
        import duckdb

        try:
            statements = self.con.extract_statements(sql)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                kinds = ", ".join(s.type.name for s in statements) or "nothing"
                raise QueryError(f"--sql takes one read-only SELECT query over {VIEW!r}; found: {kinds}")
            relation = self.con.sql(sql)
            fetch = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader  # duckdb 2.x / 1.x
            return fetch(BATCH_ROWS)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise QueryError(
                f"the SQL query failed: {first}. Query the view {VIEW!r}, whose columns are: "
                f"{', '.join(self.schema.names)}"
            ) from exc
