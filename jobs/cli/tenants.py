"""Tenant commands (jobs tenants ...) and the embedded Redis server (jobs redis ...)."""

from __future__ import annotations

import json
from typing import Any, cast

import click

from jobs import embedded_redis
from jobs.cli.options import (
    build_encoder,
    job_encoder_options,
    model_option,
    open_store,
    redis_options,
    token_budget_option,
)
from jobs.examples_io import read_examples
from jobs.tenants import add_tenant
from prune import PruneConfig
from prune.heads.head import HEAD_KINDS
from prune.heads.intent_names import MODES as INTENT_NAME_MODES
from workers.tenant_store import UnknownTenant


@click.group()
def tenants() -> None:
    """Tenants' few-shot heads, stored in Redis."""


def threshold_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a number or 'auto', got {value!r}") from None


@tenants.command("add")
@click.argument("tenant")
@click.option(
    "--examples",
    type=click.Path(dir_okay=False),
    required=True,
    help="CSV, JSONL or Parquet file with a text and a label column.",
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@click.option("--intents", default=None, help="Comma-separated intents that must all have examples.")
@click.option(
    "--head",
    "head_kind",
    type=click.Choice(HEAD_KINDS),
    default="auto",
    show_default=True,
    help="auto: the kind that cross-validates better on the examples (tenants show says which).",
)
@click.option(
    "--oos-threshold",
    default=None,
    callback=threshold_option,
    metavar="FLOAT|auto",
    help="Utterances scoring below it are out of scope. auto: calibrated on the examples' held-out "
    "scores and on examples labelled 'oos' (default: none).",
)
@click.option(
    "--intent-names",
    type=click.Choice(INTENT_NAME_MODES),
    default="auto",
    show_default=True,
    help="auto: each intent's name (card_arrival -> 'card arrival') joins its examples as one more "
    "example, when the names alone classify a quarter of the examples, above chance (tenants show says so).",
)
@model_option
@job_encoder_options  # the job's defaults: the head is built from examples encoded as the job encodes
@token_budget_option
@redis_options
def tenants_add(
    tenant: str,
    examples: str,
    text_column: str,
    label_column: str,
    intents: str | None,
    head_kind: str,
    oos_threshold: float | str | None,
    intent_names: str,
    model: str | None,
    prune: PruneConfig | None,
    dtype: str,
    token_budget: int,
    redis_url: str | None,
    redis_prefix: str,
) -> None:
    """Build TENANT's head from its examples and store it (replacing any previous version)."""
    from workers.tenant_store import validate_tenant_id

    validate_tenant_id(tenant)
    wanted = [i.strip() for i in intents.split(",") if i.strip()] if intents else None
    data = read_examples(examples, text_column, label_column, wanted)
    store = open_store(redis_url, redis_prefix)
    encoder = build_encoder(model, prune, dtype, token_budget)
    record = add_tenant(store, encoder, tenant, data, head_kind, oos_threshold, intent_names)
    cv = cast(dict[str, float], record.fit.get("cv_accuracy") or {})
    shown = ", ".join(f"{k} {100 * float(v):.1f}%" for k, v in cv.items()) or "not enough examples to cross-validate"
    click.echo(
        f"tenant {tenant}: version {record.version}, {len(record.head.labels)} intents, "
        f"{sum(record.example_counts.values())} examples, {record.head.kind} head (cross-validated: {shown}), "
        f"{names_note(record.fit.get('intent_names'))}, "
        f"out-of-scope threshold {record.head.oos_threshold}, model {record.fingerprint}"
    )


def names_note(decision: Any) -> str:
    if not decision:
        return "intent names not used (--intent-names off)"
    nearest = f"the names alone classify {100 * decision['nearest_name_accuracy']:.0f}% of the examples"
    chance = f"chance {100 * decision['chance']:.0f}%"
    if decision["used"]:
        return f"intent names used ({nearest}, {chance})"
    cv = decision.get("cv_accuracy") or {}
    why = f"cross-validated {100 * cv['with']:.1f}% with them, {100 * cv['without']:.1f}% without" if cv else chance
    return f"intent names not used ({nearest}, {why})"


@tenants.command("eval")
@click.argument("tenant")
@click.option(
    "--examples", type=click.Path(dir_okay=False), required=True, help="A labelled sample (CSV, JSONL, Parquet)."
)
@click.option("--text-column", default="text", show_default=True)
@click.option("--label-column", default="label", show_default=True)
@model_option
@job_encoder_options
@token_budget_option
@redis_options
def tenants_eval(tenant: str, examples: str, text_column: str, label_column: str, **opts: Any) -> None:
    """Score TENANT's stored head on a labelled sample, encoded as the job encodes (label 'oos'
    for utterances that should be out of scope): accuracy, per-intent precision/recall/F1,
    confusions."""
    from jobs.tenant_eval import evaluate_head

    data = read_examples(examples, text_column, label_column)
    encoder = build_encoder(opts["model"], opts["prune"], opts["dtype"], opts["token_budget"])
    record = open_store(opts["redis_url"], opts["redis_prefix"]).get(tenant, fingerprint=encoder.fingerprint)
    result = evaluate_head(record.head, encoder.encode(data.texts).embeddings, data.labels)
    click.echo(f"tenant {tenant} (version {record.version}, {record.head.kind} head): " + result.render())


@tenants.command("list")
@redis_options
def tenants_list(redis_url: str | None, redis_prefix: str) -> None:
    """List tenants with their versions."""
    store = open_store(redis_url, redis_prefix)
    names = store.tenants()
    if not names:
        click.echo("no tenants yet: add one with `jobs tenants add TENANT --examples FILE`")
        return
    click.echo(f"{'tenant':<24} {'version':>7} {'head':<8} {'intents':>7} {'examples':>8} {'model':<16} updated")
    for name in names:
        r = store.get(name)
        click.echo(
            f"{name:<24} {r.version:>7} {r.head.kind:<8} {len(r.head.labels):>7} "
            f"{sum(r.example_counts.values()):>8} {r.fingerprint:<16} {r.updated}"
        )


@tenants.command("show")
@click.argument("tenant")
@redis_options
def tenants_show(tenant: str, redis_url: str | None, redis_prefix: str) -> None:
    """Show a tenant's head as JSON (intents with example counts; not the matrix)."""
    r = open_store(redis_url, redis_prefix).get(tenant)
    click.echo(json.dumps({**r.summary(), "examples_per_intent": r.example_counts}, indent=2))


@tenants.command("remove")
@click.argument("tenant")
@redis_options
def tenants_remove(tenant: str, redis_url: str | None, redis_prefix: str) -> None:
    """Delete a tenant's head."""
    if not open_store(redis_url, redis_prefix).remove(tenant):
        raise UnknownTenant(f"unknown tenant {tenant!r}: nothing to remove")
    click.echo(f"removed tenant {tenant}")


@click.group("redis")
def redis_group() -> None:
    """The embedded Redis server."""


@redis_group.command("start")
def redis_start() -> None:
    """Start (or reuse) the embedded server and print its URL."""
    click.echo(embedded_redis.ensure_running())


@redis_group.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), required=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Addresses to listen on.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="A file holding the password (requirepass).",
)
@click.option("--dir", "folder", type=click.Path(file_okay=False), required=True, help="Data and append-only file.")
def redis_serve(port: int, bind: str, password_file: str, folder: str) -> None:
    """Start (or reuse) a password-protected TCP Redis, e.g. on a cluster's head node; exit 3 if
    it does not come up."""
    from pathlib import Path

    password = Path(password_file).read_text().strip()
    if not password:
        raise click.BadParameter(f"{password_file} is empty; put the password in it", param_hint="--password-file")
    embedded_redis.serve(port, bind, password, Path(folder))
    click.echo(f"redis on port {port} is up")


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the embedded server (its data stays in the data folder)."""
    click.echo("stopped" if embedded_redis.stop() else "not running")
