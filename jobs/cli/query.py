"""jobs query: filter, count and SQL over a classify job's labelled output."""

from __future__ import annotations

import sys

import click

from jobs.cli.options import OutputFile
from jobs.query import VIEW, Filters, Predicate, Query, QueryError, finished, select_sql
from jobs.query_output import FORMATS, TABLE_ROWS, write_csv, write_json_lines, write_parquet, write_table
from workers.labels import STATUSES


def _names(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable and comma-separated: --count-by tenant,intent == --count-by tenant --count-by intent."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def _statuses(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A misspelt status (out-of-scope) would match no row and look like an answer: refuse it."""
    names = _names(ctx, param, values)
    unknown = [n for n in names if n not in STATUSES]
    if unknown:
        shown = ", ".join(map(repr, unknown))
        raise click.BadParameter(f"unknown status {shown}; the statuses are {', '.join(STATUSES)}")
    return names


@click.command()
@click.argument("output")
@click.option("--tenant", "tenants", multiple=True, callback=_names, help="Keep these tenants (repeatable).")
@click.option("--intent", "intents", multiple=True, callback=_names, help="Keep these intents (repeatable).")
@click.option(
    "--status", "statuses", multiple=True, callback=_statuses, help=f"Keep these statuses: {', '.join(STATUSES)}."
)
@click.option("--min-score", type=float, default=None)
@click.option("--max-score", type=float, default=None)
@click.option(
    "--where",
    "wheres",
    multiple=True,
    metavar="'COLUMN OP VALUE'",
    help="A condition on any column, OP one of = != < <= > >= ~ (substring); repeatable, all must hold.",
)
@click.option("--tenant-column", default="tenant", show_default=True)
@click.option("--count-by", multiple=True, callback=_names, metavar="COLUMN[,COLUMN]", help="Grouped row counts.")
@click.option("--columns", multiple=True, callback=_names, metavar="COLUMN[,COLUMN]", help="Columns to show.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N rows.")
@click.option("--sql", default=None, help=f"A DuckDB query over the view {VIEW!r} (after the filters).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Default: table on a terminal, csv otherwise. json is JSON Lines.",
)
@click.option("--out", type=OutputFile(), default=None, help="Write to this file instead of stdout.")
def query(
    output: str,
    tenants: tuple[str, ...],
    intents: tuple[str, ...],
    statuses: tuple[str, ...],
    min_score: float | None,
    max_score: float | None,
    wheres: tuple[str, ...],
    tenant_column: str,
    count_by: tuple[str, ...],
    columns: tuple[str, ...],
    limit: int | None,
    sql: str | None,
    fmt: str | None,
    out: str | None,
) -> None:
    """Query the labelled Parquet in OUTPUT (a job's --output folder: local path or URI).

    \b
    jobs query labelled/ --tenant acme --intent card_arrival --min-score 0.6
    jobs query labelled/ --status out_of_scope --count-by tenant
    jobs query labelled/ --sql "SELECT tenant, avg(score) FROM labelled GROUP BY tenant"
    """
    if sql and (count_by or columns):
        raise click.UsageError("--sql replaces --count-by and --columns; put the grouping in the SQL")
    fmt = fmt or ("table" if sys.stdout.isatty() and out is None else "csv")
    if fmt == "parquet" and out is None:
        raise click.UsageError("--format parquet needs --out FILE (binary output is not written to a terminal)")
    filters = Filters(
        tenants, intents, statuses, min_score, max_score, tuple(Predicate.parse(w) for w in wheres), tenant_column
    )
    q = Query(output, filters)
    if not finished(output):
        click.echo(
            f"warning: {output} has no _SUCCESS: the job is unfinished or failed, results may be partial", err=True
        )
    if sql:
        statement = sql if limit is None else f"SELECT * FROM ({sql.strip().rstrip(';')}) AS q LIMIT {limit}"
    else:
        statement = select_sql(q.schema, columns, count_by, limit)
    _write(q.reader(statement), fmt, out, limit)


def _write(reader, fmt: str, out: str | None, limit: int | None) -> None:
    """Stream the result to ``out`` (or stdout) in ``fmt``; a failure while reading is a QueryError."""
    try:
        if fmt == "parquet":
            write_parquet(reader, str(out))
        elif fmt == "csv" and out:
            with open(out, "wb") as f:
                write_csv(reader, f)
        elif fmt == "csv":
            sys.stdout.flush()
            write_csv(reader, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        elif out:
            with open(out, "w", encoding="utf-8") as f:
                _text(fmt, reader, f, limit)
        else:
            _text(fmt, reader, sys.stdout, limit)
    except Exception as exc:  # errors that DuckDB raises while streaming (e.g. a failed cast)
        import duckdb
        import pyarrow as pa

        if isinstance(exc, duckdb.Error | pa.ArrowException):
            raise QueryError(f"the query failed while reading: {str(exc).strip().splitlines()[0]}") from exc
        raise


def _text(fmt: str, reader, f, limit: int | None) -> None:
    if fmt == "table":
        write_table(reader, f, TABLE_ROWS if limit is None else limit)
    else:
        write_json_lines(reader, f)
