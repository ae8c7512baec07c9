"""The query filters as SQL, on a small hand-made output (DuckDB, no job)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.errors import QueryError
from jobs.query import Filters, Predicate, Query, select_sql, where_clause


@pytest.fixture
def output(tmp_path: Path) -> str:
    rows = {
        "tenant": ["acme", "acme", "beta", "beta", "acme"],
        "intent": ["card_lost", "top_up", "card_lost", None, "card_lost"],
        "status": ["ok", "ok", "ok", "out_of_scope", "ok"],
        "score": [0.9, 0.4, 0.7, None, 0.6],
        "tokens": [10, 20, 30, 40, 50],
        "text": ["Lost my CARD", "top up", "card gone", "weather?", "card stolen"],
    }
    table = pa.table(rows)
    pq.write_table(table.slice(0, 3), tmp_path / "part-a.parquet")
    pq.write_table(table.slice(3), tmp_path / "part-b.parquet")
    return str(tmp_path)


def texts(output: str, filters: Filters) -> list[str]:
    q = Query(output, filters)
    return sorted(q.reader(select_sql(q.schema, ("text",))).read_all().column("text").to_pylist())


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), ["Lost my CARD", "card gone", "card stolen", "top up", "weather?"]),
        (Filters(tenants=("beta",)), ["card gone", "weather?"]),
        (Filters(intents=("card_lost",), tenants=("acme",)), ["Lost my CARD", "card stolen"]),
        (Filters(statuses=("out_of_scope",)), ["weather?"]),
        (Filters(min_score=0.6, max_score=0.8), ["card gone", "card stolen"]),  # null scores never match
        (Filters(where=(Predicate.parse("tokens>=30"), Predicate.parse("text ~ CARD"))), ["card gone", "card stolen"]),
        (Filters(where=(Predicate.parse("intent != card_lost"),)), ["top up"]),
    ],
)
def test_filters_select_the_rows_they_name(output: str, filters: Filters, expected: list[str]) -> None:
    assert texts(output, filters) == expected


def test_values_are_quoted_never_spliced(output: str) -> None:
    hostile = Filters(tenants=("acme' OR '1'='1",))
    assert "'acme'' OR ''1''=''1'" in where_clause(Query(output).schema, hostile)
    assert texts(output, hostile) == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (Filters(where=(Predicate.parse("tokens>=many"),)), "expected a number, found 'many'"),
        (Filters(where=(Predicate.parse("channel=web"),)), "no column 'channel'"),
        (Filters(tenants=("acme",), tenant_column="customer"), "no column 'customer'"),
    ],
)
def test_bad_filters_say_what_is_wrong(output: str, filters: Filters, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Query(output, filters)


def test_a_where_without_an_operator_is_refused() -> None:
    with pytest.raises(QueryError, match="expected COLUMN OP VALUE"):
        Predicate.parse("tokens")


def test_csv_writes_nested_and_binary_input_columns_as_json_text() -> None:
    """An input column of lists, structs or bytes is kept in the output; --format csv failed on it
    ("Unsupported Type: list<int64>") while table, json and parquet read it."""
    import io

    import pyarrow.csv as pacsv

    from jobs.query_output import write_csv

    table = pa.table(
        {
            "id": ["a", "b"],
            "tags": pa.array([[1, 2], None]),
            "meta": pa.array([{"x": 1}, {"x": 2}]),
            "raw": pa.array([b"ok", None]),
        }
    )
    out = io.BytesIO()
    assert write_csv(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), out) == 2
    back = pacsv.read_csv(io.BytesIO(out.getvalue())).to_pylist()
    assert back == [
        {"id": "a", "tags": "[1, 2]", "meta": '{"x": 1}', "raw": "\"b'ok'\""},
        {"id": "b", "tags": "", "meta": '{"x": 2}', "raw": ""},  # null: an empty field, as in any CSV
    ]
