"""The `jobs` command line. Every error is mapped to an exit code here, and only here.

Exit codes: 0 ok, 1 unexpected failure (a bug: traceback shown), 2 bad input or usage
(including an unknown tenant or a head built with another model), 3 Redis unavailable
(unreachable, wrong password, or the embedded server failed to start), 4 a job that did not
complete (dead-lettered units, every actor lost, an output folder owned by another job).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from jobs import embedded_redis
from jobs.examples_io import read_examples
from jobs.run import JobError
from jobs.tenants import add_tenant
from prune import Encoder, EncoderOptions, ModelError, PruneConfig
from prune.config import DTYPES
from prune.data import DEFAULT_DATA_DIR
from prune.head import HEAD_KINDS, centroid_head
from workers.connection import RedisUnavailable, connect, redact
from workers.store import CentroidStore, UnknownTenant

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_JOB_INCOMPLETE = 4
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _prune_option(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> PruneConfig | None:
    if value is None or value.lower() in ("", "none", "off"):
        return None
    try:
        if value == "tuned":
            from prune.tuned import tuned_default

            return tuned_default()
        return PruneConfig.parse(value)
    except (ValueError, FileNotFoundError) as exc:
        raise click.BadParameter(str(exc)) from exc


def encoder_options(fn):  # type: ignore[no-untyped-def]
    """The options every command that builds an encoder takes."""
    fn = click.option(
        "--token-budget",
        type=click.IntRange(min=1),
        default=4096,
        show_default=True,
        help="Max rows x padded length per batch.",
    )(fn)
    fn = click.option(
        "--dtype",
        type=click.Choice(DTYPES),
        default="float32",
        show_default=True,
        help="bfloat16 uses CPU autocast (AMX), about 2x faster.",
    )(fn)
    fn = click.option(
        "--prune",
        "prune",
        default=None,
        callback=_prune_option,
        metavar="s=INT,q=FLOAT,l=INT[,score=NAME]",
        help="Token pruning config, or 'none' (default: none).",
    )(fn)
    fn = click.option(
        "--model",
        type=click.Path(file_okay=False),
        default=None,
        help="A sentence-transformers BERT directory (default: packaged all-MiniLM-L6-v2).",
    )(fn)
    return fn


def build_encoder(model: str | None, prune: PruneConfig | None, dtype: str, token_budget: int) -> Encoder:
    return Encoder(model, prune, EncoderOptions(dtype=dtype, token_budget=token_budget))  # type: ignore[arg-type]


@click.group()
def main() -> None:
    """Few-shot intent classification of utterance logs as a distributed batch job."""


@main.command()
@encoder_options
@click.option(
    "--input",
    "input_file",
    type=click.File("r"),
    default="-",
    help="One text per line (default: standard input).",
)
def encode(model: str | None, prune: PruneConfig | None, dtype: str, token_budget: int, input_file) -> None:  # type: ignore[no-untyped-def]
    """Embed texts, one JSON object per line: tokens, tokens_kept, truncated, embedding."""
    texts = [line.rstrip("\n") for line in input_file]
    enc = build_encoder(model, prune, dtype, token_budget)
    result = enc.encode(texts)
    for i in range(len(result)):
        click.echo(
            json.dumps(
                {
                    "tokens": int(result.tokens[i]),
                    "tokens_kept": int(result.tokens_kept[i]),
                    "truncated": bool(result.truncated[i]),
                    "embedding": [round(float(x), 6) for x in result.embeddings[i]],
                }
            )
        )


@main.command()
@encoder_options
@click.option(
    "--examples",
    type=click.Path(dir_okay=False, exists=True),
    default=str(EXAMPLES_DIR / "acme_examples.csv"),
    show_default=True,
    help="CSV with text,label columns: the few-shot examples.",
)
@click.option(
    "--utterances",
    type=click.Path(dir_okay=False, exists=True),
    default=str(EXAMPLES_DIR / "utterances.txt"),
    show_default=True,
    help="One utterance per line.",
)
def demo(
    model: str | None,
    prune: PruneConfig | None,
    dtype: str,
    token_budget: int,
    examples: str,
    utterances: str,
) -> None:
    """Build a few-shot head from examples and classify sample utterances."""
    with open(examples, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"text", "label"} <= set(rows[0]):
        raise ValueError(f"{examples}: expected a CSV with columns text,label and at least one row")
    texts = [line.strip() for line in Path(utterances).read_text().splitlines() if line.strip()]
    enc = build_encoder(model, prune, dtype, token_budget)
    head = centroid_head(enc.encode([r["text"] for r in rows]).embeddings, [r["label"] for r in rows])
    result = enc.encode(texts)
    pred = head.classify(result.embeddings)
    labels = head.label_of(pred)
    click.echo(
        f"model {enc.fingerprint}  prune {enc.prune or 'off'}  dtype {dtype}  "
        f"{len(head.labels)} intents from {len(rows)} examples"
    )
    for text, label, score, kept, seen in zip(
        texts, labels, pred.score, result.tokens_kept, result.tokens, strict=True
    ):
        click.echo(f"{label:<36} {score:5.3f}  {kept:>3}/{seen:<3} {text[:70]}")
    click.echo(
        f"{len(texts)} utterances, tokens kept {result.tokens_kept.sum()}/{result.tokens.sum()}, "
        f"{len(texts) / max(result.seconds, 1e-9):.0f} utterances/s"
    )


def _csv_ints(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,2,3,5,10, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


@main.command("eval")
@click.option("--data-dir", type=click.Path(file_okay=False), default=str(DEFAULT_DATA_DIR), show_default=True)
@click.option("--dataset", "datasets", multiple=True, default=("banking77", "clinc150"), show_default=True)
@click.option("--split", default="test", show_default=True, help="The split that is scored (support: train).")
@click.option("--shots", default="1,2,3,5,10", show_default=True, callback=_csv_ints)
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--head", "heads", multiple=True, type=click.Choice(HEAD_KINDS), default=("centroid",), show_default=True)
@click.option(
    "--config",
    "configs",
    multiple=True,
    default=("fp32",),
    show_default=True,
    help="Encoder variant DTYPE[:PRUNE], e.g. bf16, bf16:tuned, fp32:s=15,q=0.8,l=1 (repeatable).",
)
@click.option("--model", type=click.Path(file_okay=False), default=None)
@click.option("--timing-repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the JSON report here.")
@click.option("--markdown", type=click.Path(dir_okay=False), default=None, help="Write the Markdown table here.")
def eval_command(
    data_dir: str,
    datasets: tuple[str, ...],
    split: str,
    shots: tuple[int, ...],
    seeds: int,
    heads: tuple[str, ...],
    configs: tuple[str, ...],
    model: str | None,
    timing_repeats: int,
    out: str | None,
    markdown: str | None,
) -> None:
    """Few-shot accuracy, F1, OOS and speed of encoder variants side by side."""
    from prune.eval_run import render_markdown, run_eval
    from prune.evaluate import EvalSettings, Variant
    from prune.tuned import tuned_default

    variants = [Variant.parse(c, tuned_default) for c in configs]
    report = run_eval(
        data_dir, datasets, variants, EvalSettings(shots, seeds, heads), split, timing_repeats, model=model
    )
    table = render_markdown(report)
    click.echo(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(table)


def _csv(kind: type) -> Callable[[click.Context | None, click.Parameter | None, str], tuple]:
    def parse(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple:
        try:
            out = tuple(kind(x.strip()) for x in value.split(",") if x.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {kind.__name__} values, got {value!r}") from None
        if not out:
            raise click.BadParameter("expected at least one value")
        return out

    return parse


@main.command("tune")
@click.option("--data-dir", type=click.Path(file_okay=False), default=str(DEFAULT_DATA_DIR), show_default=True)
@click.option("--dataset", "datasets", multiple=True, default=("banking77", "clinc150"), show_default=True)
@click.option("--shots", default="5,10", show_default=True, callback=_csv_ints)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--query-per-intent", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="bfloat16", show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["speed", "budget"]),
    default="speed",
    show_default=True,
    help="speed: fastest within --max-drop on every task; budget: most accurate within --token-budget.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Max accuracy drop (points) on every task.",
)
@click.option("--token-budget", type=click.FloatRange(0, 1), default=None, help="Max fraction of tokens kept.")
@click.option("--grid-s", default="8,12,16", show_default=True, callback=_csv(int))
@click.option("--grid-q", default="0.2,0.4,0.6", show_default=True, callback=_csv(float))
@click.option("--grid-l", default="1,2,3", show_default=True, callback=_csv(int))
@click.option("--grid-score", default="attention,norm,learned", show_default=True, callback=_csv(str))
@click.option("--max-timed", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--timing-repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--confirm/--no-confirm",
    default=True,
    show_default=True,
    help="Report the chosen config on the test splits (1,2,3,5,10-shot, 5 seeds).",
)
@click.option("--model", type=click.Path(file_okay=False), default=None)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the JSON report here.")
@click.option("--write-default", is_flag=True, help="Ship the chosen config as the package default.")
def tune_command(
    data_dir: str,
    datasets: tuple[str, ...],
    shots: tuple[int, ...],
    seeds: int,
    query_per_intent: int,
    dtype: str,
    mode: str,
    max_drop: float,
    token_budget: float | None,
    grid_s: tuple[int, ...],
    grid_q: tuple[float, ...],
    grid_l: tuple[int, ...],
    grid_score: tuple[str, ...],
    max_timed: int,
    timing_repeats: int,
    confirm: bool,
    model: str | None,
    out: str | None,
    write_default: bool,
) -> None:
    """Multi-task offline search for ONE pruning config (train/valid data only)."""
    import time

    from tqdm import tqdm

    from prune.eval_run import render_markdown, run_eval
    from prune.evaluate import EvalSettings, Variant
    from prune.tune import Grid, run_tune, write_default_file

    if mode == "budget" and token_budget is None:
        raise click.BadParameter("--mode budget needs --token-budget", param_hint="--token-budget")
    started = time.perf_counter()
    report = run_tune(
        data_dir,
        datasets,
        Grid(grid_s, grid_q, grid_l, grid_score),
        shots,
        seeds,
        query_per_intent,
        dtype,
        mode,
        max_drop,
        token_budget,
        max_timed,
        timing_repeats,
        model,
        progress=tqdm,
        log=lambda m: click.echo(m, err=True),
    )
    chosen = report["chosen"]
    click.echo(
        f"chosen: {chosen['config'] or 'unpruned'}  speed-up {chosen['speedup']:.2f}x over unpruned {dtype}, "
        f"tokens kept {100 * chosen['tokens_kept']:.1f}%, worst task drop {chosen['worst_drop_pt']:.2f} pt"
    )
    for task, drop in chosen["drops_pt"].items():
        click.echo(f"  {task}: accuracy {100 * chosen['accuracy'][task]:.1f} (drop {drop:+.2f} pt)")
    if confirm and chosen["config"]:
        short = "bf16" if dtype == "bfloat16" else "fp32"
        cfg = chosen["config"]
        spec = f"{short}:s={cfg['min_tokens']},q={cfg['quantile']},l={cfg['layer']},score={cfg['score']}"
        test = run_eval(
            data_dir,
            datasets,
            [Variant.parse(short), Variant.parse(spec)],
            EvalSettings(),
            "test",
            timing_repeats,
            model=model,
        )
        report["test"] = test
        click.echo("\non the test splits (not used by the search):\n" + render_markdown(test))
    report["seconds"] = time.perf_counter() - started
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    if write_default:
        path = write_default_file(report, " ".join(["jobs", *sys.argv[1:]]), data_dir)
        click.echo(f"wrote {path}")


@main.command("train-scorer")
@click.option("--data-dir", type=click.Path(file_okay=False), default=str(DEFAULT_DATA_DIR), show_default=True)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    default=("banking77", "clinc150"),
    show_default=True,
    help="Datasets whose train texts (labels ignored) are the unlabelled training texts.",
)
@click.option("--texts", "max_texts", type=click.IntRange(min=100), default=8000, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True)
@click.option("--model", type=click.Path(file_okay=False), default=None)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Output file (default: shipped with the package, keyed by the model fingerprint).",
)
def train_scorer(
    data_dir: str, datasets: tuple[str, ...], max_texts: int, steps: int, model: str | None, out: str | None
) -> None:
    """Train the learned token scorer (score=learned) on unlabelled texts."""
    import random

    from prune.data import load_split
    from prune.scorer import PACKAGED_DIR, train_scorers

    texts = sorted({t for ds in datasets for t in load_split(data_dir, ds, "train").texts})
    texts = random.Random(0).sample(texts, min(max_texts, len(texts)))
    encoder = Encoder(model)
    path = Path(out) if out else PACKAGED_DIR / f"{encoder.fingerprint}.safetensors"
    train_scorers(encoder, texts, path, steps=steps, log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path} ({len(texts)} unlabelled texts from {', '.join(datasets)} train)")


def redis_options(fn):  # type: ignore[no-untyped-def]
    fn = click.option(
        "--redis-prefix",
        envvar="JOBS_REDIS_PREFIX",
        default="fsj",
        show_default=True,
        help="Prefix of every Redis key (env JOBS_REDIS_PREFIX).",
    )(fn)
    fn = click.option(
        "--redis-url",
        envvar="JOBS_REDIS_URL",
        default=None,
        help="redis://[:PASSWORD@]HOST:PORT/DB, rediss://... or unix:///PATH "
        "(env JOBS_REDIS_URL; default: the embedded server).",
    )(fn)
    return fn


def open_store(redis_url: str | None, prefix: str) -> CentroidStore:
    return CentroidStore(connect(redis_url or embedded_redis.ensure_running()), prefix)


@main.group()
def tenants() -> None:
    """Tenants' few-shot heads, stored in Redis."""


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
@click.option("--head", "head_kind", type=click.Choice(HEAD_KINDS), default="centroid", show_default=True)
@click.option(
    "--oos-threshold",
    type=float,
    default=None,
    help="Utterances scoring below it are labelled out of scope (default: none).",
)
@encoder_options
@redis_options
def tenants_add(
    tenant: str,
    examples: str,
    text_column: str,
    label_column: str,
    intents: str | None,
    head_kind: str,
    oos_threshold: float | None,
    model: str | None,
    prune: PruneConfig | None,
    dtype: str,
    token_budget: int,
    redis_url: str | None,
    redis_prefix: str,
) -> None:
    """Build TENANT's head from its examples and store it (replacing any previous version)."""
    from workers.store import validate_tenant_id

    validate_tenant_id(tenant)
    wanted = [i.strip() for i in intents.split(",") if i.strip()] if intents else None
    data = read_examples(examples, text_column, label_column, wanted)
    store = open_store(redis_url, redis_prefix)
    encoder = build_encoder(model, prune, dtype, token_budget)
    record = add_tenant(store, encoder, tenant, data, head_kind, oos_threshold)
    click.echo(
        f"tenant {tenant}: version {record.version}, {len(record.head.labels)} intents, "
        f"{sum(record.example_counts.values())} examples, {record.head.kind} head, "
        f"model {record.fingerprint}"
    )


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


@main.group("redis")
def redis_group() -> None:
    """The embedded Redis server."""


@redis_group.command("start")
def redis_start() -> None:
    """Start (or reuse) the embedded server and print its URL."""
    click.echo(embedded_redis.ensure_running())


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the embedded server (its data stays in the data folder)."""
    click.echo("stopped" if embedded_redis.stop() else "not running")


@main.group()
def submit() -> None:
    """Submit batch jobs."""


@submit.command("classify")
@click.option("--input", "input_uri", required=True, help="Parquet file or folder: a local path or a pyarrow URI.")
@click.option("--output", "output_uri", required=True, help="Folder for part-*.parquet, _report.json, _SUCCESS.")
@click.option("--text-column", default="text", show_default=True)
@click.option("--tenant-column", default="tenant", show_default=True)
@click.option("--tenant", "fixed_tenant", default=None, help="One tenant for every row (instead of a column).")
@click.option("--id-column", default=None, help="A row id column that must exist (kept in the output).")
@click.option("--model", type=click.Path(file_okay=False), default=None)
@click.option(
    "--prune",
    default="tuned",
    show_default=True,
    callback=_prune_option,
    metavar="s=INT,q=FLOAT,l=INT[,score=NAME]|tuned|none",
    help="Token pruning config.",
)
@click.option("--dtype", type=click.Choice(DTYPES), default="bfloat16", show_default=True)
@click.option("--token-budget", type=click.IntRange(min=1), default=4096, show_default=True)
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
    default=1000,
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
@click.option("--resume", default=None, metavar="JOB_ID", help="Continue a job whose driver died.")
@redis_options
def submit_classify(
    input_uri: str,
    output_uri: str,
    text_column: str,
    tenant_column: str,
    fixed_tenant: str | None,
    id_column: str | None,
    model: str | None,
    prune: PruneConfig | None,
    dtype: str,
    token_budget: int,
    actors: int | None,
    cpus_per_actor: int | None,
    unit_rows: int,
    max_attempts: int,
    claim_idle: float,
    ray_address: str | None,
    job_id: str | None,
    resume: str | None,
    redis_url: str | None,
    redis_prefix: str,
) -> None:
    """Classify Parquet utterance logs into labelled Parquet plus a throughput report."""
    from tqdm import tqdm

    from jobs.plan import Columns
    from jobs.run import JobSpec, run_job

    spec = JobSpec(
        input_uri,
        output_uri,
        Columns(text_column, None if fixed_tenant else tenant_column, id_column, fixed_tenant),
        model,
        prune.to_dict() if prune else None,
        dtype,
        actors,
        cpus_per_actor,
        unit_rows,
        token_budget,
        max_attempts,
        int(claim_idle * 1000),
    )
    url = redis_url or embedded_redis.ensure_running()
    connect(url)  # fail fast, before planning
    bar = tqdm(total=None, unit="rows", desc="classify", disable=None, dynamic_ncols=True)

    def progress(rows: int, units: int, dead: int) -> None:
        bar.n = rows
        bar.set_postfix(units=units, dead=dead, refresh=False)
        bar.refresh()

    try:
        report = run_job(
            None if resume else spec,
            url,
            redis_prefix,
            ray_address,
            job_id,
            resume,
            progress,
            log=lambda m: click.echo(m, err=True),
        )
    finally:
        bar.close()
    click.echo(
        f"job {report['job_id']}: {report['rows']['written']} rows written to {report['output']} in "
        f"{report['wall_s']:.1f}s ({report['rows_per_s']:.0f} rows/s), tokens kept "
        f"{report['tokens_kept_pct']:.1f}%, statuses {report['statuses']}"
    )
    if report["dead_units"]:
        raise JobIncomplete(
            f"{len(report['dead_units'])} unit(s) ({report['rows']['dead']} rows) failed and were dead-lettered; "
            f"no _SUCCESS written. First cause: {report['dead_units'][0]['error'].splitlines()[0]}"
        )


class JobIncomplete(RuntimeError):
    pass


def entry() -> None:
    """Console-script entry point: runs the CLI and maps errors to exit codes."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (JobIncomplete, JobError) as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(EXIT_JOB_INCOMPLETE)
    except (RedisUnavailable, embedded_redis.EmbeddedRedisError) as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except (ModelError, ValueError, TypeError, FileNotFoundError, UnknownTenant) as exc:
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(EXIT_BAD_INPUT)
