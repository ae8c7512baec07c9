"""Job commands: jobs submit classify, and jobs demo (a tenant plus a job on the bundled logs)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from jobs import embedded_redis
from jobs.cli.options import (
    EXAMPLES_DIR,
    build_encoder,
    job_encoder_options,
    model_option,
    redis_options,
    token_budget_option,
)
from jobs.errors import JobIncomplete
from jobs.examples_io import read_examples
from jobs.report_schema import Report
from jobs.tenants import add_tenant
from prune import PruneConfig
from prune.config import DEFAULT_TOKEN_BUDGET
from workers.connection import connect
from workers.job_spec import DEFAULT_UNIT_ROWS, Columns, JobSpec
from workers.parquet_io import absolute_uri
from workers.tenant_store import CentroidStore, validate_name


@click.group()
def submit() -> None:
    """Submit batch jobs."""


@submit.command("classify")
@click.option("--input", "input_uri", help="Parquet file or folder: a local path or a pyarrow URI.")
@click.option("--output", "output_uri", help="Folder for part-*.parquet, _report.json, _SUCCESS.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--tenant-column", default="tenant", show_default=True)
@click.option("--tenant", "fixed_tenant", default=None, help="One tenant for every row (instead of a column).")
@click.option("--id-column", default=None, help="A row id column that must exist (kept in the output).")
@model_option
@job_encoder_options
@token_budget_option
@click.option("--actors", type=click.IntRange(min=1), default=None, help="Default: one per node that fits one.")
@click.option(
    "--cpus-per-actor",
    type=click.IntRange(min=1),
    default=None,
    help="Default: 4 on a cluster, min(4, cores) on the local default.",
)
@click.option(
    "--unit-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_UNIT_ROWS,
    show_default=True,
    help="Rows per work unit (units follow row-group boundaries).",
)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--claim-idle",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds before a unit left by a dead actor is taken over.",
)
@click.option("--ray-address", envvar="RAY_ADDRESS", default=None, help="Default: a local Ray instance.")
@click.option("--job-id", default=None, help="Default: a new id from the time and a random suffix.")
@click.option(
    "--resume", default=None, metavar="JOB_ID", help="Continue a job whose driver died, or retry its dead units."
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the files of a finished job in --output: only files proven that job's (never a running "
    "job's folder, never files no job wrote).",
)
@redis_options
def submit_classify(
    input_uri: str | None,
    output_uri: str | None,
    text_column: str,
    tenant_column: str,
    fixed_tenant: str | None,
    id_column: str | None,
    claim_idle: float,
    ray_address: str | None,
    job_id: str | None,
    resume: str | None,
    overwrite: bool,
    redis_url: str | None,
    redis_prefix: str,
    **encoder_and_queue: Any,
) -> None:
    """Classify Parquet utterance logs into labelled Parquet plus a throughput report."""
    from jobs.run import run_job

    for name, value in (("--job-id", job_id), ("--resume", resume), ("--tenant", fixed_tenant)):
        if value is not None:
            validate_name(name, value)
    if resume and job_id not in (None, resume):
        raise click.UsageError(f"--job-id {job_id} and --resume {resume} name two jobs; give one")
    if not resume and not (input_uri and output_uri):
        raise click.UsageError("give --input and --output (or --resume JOB_ID to continue a job)")

    spec = (
        None  # a resumed job runs with the spec stored when it was submitted
        if resume
        else JobSpec(
            input=str(input_uri),
            output=str(output_uri),
            columns=Columns(text_column, None if fixed_tenant else tenant_column, id_column, fixed_tenant),
            claim_idle_ms=int(claim_idle * 1000),
            **encoder_and_queue,
        )
    )
    given = _given_with_resume(click.get_current_context()) if resume else None
    url = redis_url or embedded_redis.ensure_running()
    connect(url)  # fail fast, before planning
    with _progress_bar() as progress:
        report = run_job(
            spec,
            redis_url=url,
            prefix=redis_prefix,
            ray_address=ray_address,
            job_id=job_id,
            resume=resume,
            given=given,
            on_progress=progress,
            log=lambda m: click.echo(m, err=True),
            overwrite=overwrite,
        )
    _summarise(report)


# option parameter -> (JobSpec field, as the stored spec holds it)
_SPEC_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "input_uri": ("input", absolute_uri),
    "output_uri": ("output", absolute_uri),
    "text_column": ("columns.text", str),
    "tenant_column": ("columns.tenant", str),
    "fixed_tenant": ("columns.fixed_tenant", str),
    "id_column": ("columns.id", str),
    "model": ("model", str),
    "prune": ("prune", lambda p: p.to_dict() if p else None),
    "dtype": ("dtype", str),
    "token_budget": ("token_budget", int),
    "actors": ("actors", int),
    "cpus_per_actor": ("cpus_per_actor", int),
    "unit_rows": ("unit_rows", int),
    "max_attempts": ("max_attempts", int),
    "claim_idle": ("claim_idle_ms", lambda s: int(s * 1000)),
}


def _given_with_resume(ctx: click.Context) -> dict[str, tuple[str, Any]]:
    """The job options typed (or set in the environment) beside --resume: spec field -> (option, value)."""
    given = {}
    for param in ctx.command.params:
        name = param.name or ""
        source = ctx.get_parameter_source(name)
        if name in _SPEC_FIELDS and source not in (None, ParameterSource.DEFAULT):
            path, convert = _SPEC_FIELDS[name]
            value = ctx.params[name]
            given[path] = (param.opts[0], None if value is None else convert(value))
    return given


def _summarise(report: Report) -> None:
    """One line of figures; a job with dead units is an error that says how to retry them."""
    click.echo(
        f"job {report.job_id}: {report.rows.written} rows written to {report.output} in "
        f"{report.wall_s:.1f}s ({report.rows_per_s:.0f} rows/s), tokens kept "
        f"{report.tokens_kept_pct:.1f}%, statuses {report.statuses}"
    )
    if report.dead_units:
        raise JobIncomplete(
            f"{len(report.dead_units)} unit(s) ({report.rows.dead} rows) failed and were dead-lettered; "
            f"no _SUCCESS written. First cause: {report.dead_units[0].error.splitlines()[0]}. "
            f"Once the cause is fixed, retry them with --resume {report.job_id}"
        )


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int, int], None]]:
    """A rows bar on stderr (hidden when not a terminal), fed with (rows, units done, units dead)."""
    from tqdm import tqdm

    bar = tqdm(total=None, unit="rows", desc="classify", disable=None, dynamic_ncols=True)

    def progress(rows: int, units: int, dead: int) -> None:
        bar.n = rows
        bar.set_postfix(units=units, dead=dead, refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


@click.command()
@click.argument("job_id")
@click.option("--force", is_flag=True, help="Also a job with unfinished units (one that will never be resumed).")
@redis_options
def forget(job_id: str, force: bool, redis_url: str | None, redis_prefix: str) -> None:
    """Delete a job's state from Redis (its queue, pinned heads, output claim); its files stay.

    For a job whose driver died while creating it (then submit it again with the same --job-id),
    or one that will never be resumed (its folder may then be taken with --overwrite)."""
    from jobs.forget import forget_job

    validate_name("job id", job_id)
    client = connect(redis_url or embedded_redis.ensure_running())
    click.echo(forget_job(client, redis_prefix, job_id, force))


@click.command()
@click.option(
    "--examples",
    type=click.Path(dir_okay=False, exists=True),
    default=str(EXAMPLES_DIR / "acme_examples.csv"),
    show_default=True,
    help="Few-shot examples (text,label) of the demo tenant acme.",
)
@click.option(
    "--logs",
    type=click.Path(exists=True),
    default=str(EXAMPLES_DIR / "logs"),
    show_default=True,
    help="Parquet utterance logs (id, tenant, text).",
)
@click.option("--output", default=None, help="Output folder (default: ./runs/demo-<job id>).")
@job_encoder_options
@redis_options
def demo(
    examples: str,
    logs: str,
    output: str | None,
    prune: PruneConfig | None,
    dtype: str,
    redis_url: str | None,
    redis_prefix: str,
) -> None:
    """Add the demo tenant and run the classify job on the bundled sample logs."""
    import pyarrow.parquet as pq

    from jobs.run import new_job_id, run_job

    url = redis_url or embedded_redis.ensure_running()
    store = CentroidStore(connect(url), redis_prefix)
    encoder = build_encoder(None, prune, dtype, DEFAULT_TOKEN_BUDGET)  # the head from what the job encodes
    record = add_tenant(store, encoder, "acme", read_examples(examples))
    click.echo(
        f"tenant acme: version {record.version}, {len(record.head.labels)} intents from "
        f"{sum(record.example_counts.values())} examples"
    )
    job_id = new_job_id()
    out = output or str(Path("runs") / f"demo-{job_id}")
    spec = JobSpec(input=logs, output=out, columns=Columns("text", "tenant", "id"), prune=prune, dtype=dtype)
    report = run_job(spec, redis_url=url, prefix=redis_prefix, job_id=job_id, log=lambda m: click.echo(m, err=True))
    click.echo(
        f"job {job_id}: {report.rows.written} rows -> {out}  ({report.rows_per_s:.0f} rows/s "
        f"end to end, tokens kept {report.tokens_kept_pct:.1f}%, prune {prune or 'off'}, {report.ran_dtypes()})"
    )
    click.echo(f"statuses: {report.statuses}")
    rows = [r for p in sorted(Path(out).glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    for r in sorted(rows, key=lambda r: r["id"])[:15]:
        score = "" if r["score"] is None else f"{r['score']:.3f}"
        click.echo(
            f"{r['id']}  {r['tenant']!s:<7} {r['status']:<15} {r['intent']!s:<36} {score:>5}  "
            f"{r['tokens_kept']:>3}/{r['tokens']:<3} {(r['text'] or '')[:60]!r}"
        )
