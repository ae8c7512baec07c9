"""Model-side commands: encode, eval, tune, train-scorer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click

from jobs.cli.options import DTYPE_HELP, OutputFile, build_encoder, csv_ints, csv_of, encoder_options, model_option
from jobs.errors import TextsError
from prune import PruneConfig
from prune.config import DTYPE_CHOICES, resolve_dtype
from prune.heads.head import HEAD_KINDS
from prune.heads.intent_names import MODES as INTENT_NAME_MODES
from prune.search.data import DEFAULT_DATA_DIR


def packaged_data(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    return value or str(DEFAULT_DATA_DIR)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    callback=packaged_data,
    envvar="JOBS_DATA_DIR",
    help='A folder of DATASET/{train,valid,test}.jsonl ({"text", "label"} lines; env JOBS_DATA_DIR). '
    "Default: BANKING77 and CLINC150, shipped with the package.",
)


@click.command()
@encoder_options
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    default="-",
    help="One UTF-8 text per line (default: standard input).",
)
def encode(model: str | None, prune: PruneConfig | None, dtype: str, token_budget: int, input_file) -> None:
    """Embed texts, one JSON object per line: tokens, tokens_kept, truncated, embedding."""
    texts = read_lines(input_file)
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


def read_lines(stream: BinaryIO) -> list[str]:
    """One text per line (a trailing CR LF or LF removed, and a leading byte-order mark), or a
    TextsError naming every line that is not UTF-8: one output row per input line, never a
    guessed decoding."""
    texts: list[str] = []
    bad: list[str] = []
    for n, raw in enumerate(stream, start=1):
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        try:
            texts.append(raw.decode("utf-8-sig" if n == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            bad.append(f"line {n} (byte {raw[exc.start]:#04x} at byte {exc.start + 1})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        name = getattr(stream, "name", "<stdin>")
        raise TextsError(
            f"{name}: {len(bad)} line(s) are not UTF-8: {shown}. Re-encode the input as UTF-8 "
            f"(for example: iconv -f latin1 -t utf-8)"
        )
    return texts


@click.command("eval")
@data_dir_option
@click.option("--dataset", "datasets", multiple=True, default=("banking77", "clinc150"), show_default=True)
@click.option("--split", default="test", show_default=True, help="The split that is scored (support: train).")
@click.option("--shots", default="1,2,3,5,10", show_default=True, callback=csv_ints)
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--head", "heads", multiple=True, type=click.Choice(HEAD_KINDS), default=("auto",), show_default=True)
@click.option(
    "--intent-names",
    type=click.Choice(INTENT_NAME_MODES),
    default="auto",
    show_default=True,
    help="As `tenants add --intent-names`: auto joins each intent's name to its examples when informative.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    default=("fp32",),
    show_default=True,
    help="Encoder variant DTYPE[:PRUNE], e.g. bf16, bf16:tuned, fp32:s=15,q=0.8,l=1 (repeatable).",
)
@click.option(
    "--support-config",
    default=None,
    metavar="DTYPE[:PRUNE]",
    help="Encode the few-shot examples with this variant for every --config (default: each --config "
    "itself). The product's pairing: --support-config as `tenants add` encodes, --config as the job.",
)
@model_option
@click.option("--timing-repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--out", type=OutputFile(), default=None, help="Write the JSON report here.")
@click.option("--markdown", type=OutputFile(), default=None, help="Write the Markdown table here.")
def eval_command(
    data_dir: str,
    datasets: tuple[str, ...],
    split: str,
    shots: tuple[int, ...],
    seeds: int,
    heads: tuple[str, ...],
    intent_names: str,
    configs: tuple[str, ...],
    support_config: str | None,
    model: str | None,
    timing_repeats: int,
    out: str | None,
    markdown: str | None,
) -> None:
    """Few-shot accuracy, F1, OOS and speed of encoder variants side by side."""
    from prune.config import tuned_default
    from prune.search.eval_run import render_markdown, run_eval
    from prune.search.evaluate import EvalSettings, Variant

    def tuned() -> PruneConfig | None:
        return tuned_default(model)

    variants = [Variant.parse(c, tuned) for c in configs]
    support = Variant.parse(support_config, tuned) if support_config else None
    settings = EvalSettings(shots, seeds, heads, intent_names=intent_names)
    report = run_eval(
        data_dir, datasets, variants, settings, split, timing_repeats, model=model, support_variant=support
    )
    table = render_markdown(report)
    click.echo(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(table)


@click.command("tune")
@data_dir_option
@click.option("--dataset", "datasets", multiple=True, default=("banking77", "clinc150"), show_default=True)
@click.option("--shots", default="5,10", show_default=True, callback=csv_ints)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--query-per-intent", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True, help=DTYPE_HELP)
@click.option(
    "--mode",
    type=click.Choice(["speed", "budget"]),
    default="speed",
    show_default=True,
    help="speed: fastest within --max-drop on every task; budget: most accurate within --max-kept.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Max accuracy drop (points) on every task.",
)
@click.option(
    "--max-kept", type=click.FloatRange(0, 1), default=None, help="Mode budget: max share of tokens kept (0-1)."
)
@click.option("--grid-s", default="8,12,16", show_default=True, callback=csv_of(int))
@click.option("--grid-q", default="0.2,0.4,0.6", show_default=True, callback=csv_of(float))
@click.option("--grid-l", default="1,2,3", show_default=True, callback=csv_of(int))
@click.option("--grid-score", default="attention,norm,learned", show_default=True, callback=csv_of(str))
@click.option(
    "--head",
    type=click.Choice(HEAD_KINDS),
    default="linear",
    show_default=True,
    help="The head the configs are scored with (linear: what auto keeps on these tasks; auto cross-validates "
    "every fit and is several times slower).",
)
@click.option("--max-timed", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--timing-repeats", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--confirm/--no-confirm",
    default=True,
    show_default=True,
    help="Report the chosen config on the test splits (1,2,3,5,10-shot, 5 seeds).",
)
@model_option
@click.option("--out", type=OutputFile(), default=None, help="Write the JSON report here.")
@click.option(
    "--write-default",
    is_flag=True,
    help="Make the chosen config the --prune tuned of this user for this model "
    "(<JOBS_HOME>/tuned/<model fingerprint>.json).",
)
def tune_command(
    data_dir: str,
    datasets: tuple[str, ...],
    dtype: str,
    mode: str,
    max_kept: float | None,
    grid_s: tuple[int, ...],
    grid_q: tuple[float, ...],
    grid_l: tuple[int, ...],
    grid_score: tuple[str, ...],
    confirm: bool,
    model: str | None,
    out: str | None,
    write_default: bool,
    **search: Any,
) -> None:
    """Multi-task offline search for ONE pruning config (train/valid data only)."""
    import time

    from tqdm import tqdm

    from prune.search.tune import Grid, run_tune, write_default_file

    if mode == "budget" and max_kept is None:
        raise click.BadParameter("--mode budget needs --max-kept (the share of tokens kept)", param_hint="--max-kept")
    dtype = resolve_dtype(dtype)
    started = time.perf_counter()
    report = run_tune(
        data_dir,
        datasets,
        Grid(grid_s, grid_q, grid_l, grid_score),
        dtype=dtype,
        mode=mode,
        max_kept=max_kept,
        model=model,
        progress=tqdm,
        log=lambda m: click.echo(m, err=True),
        **search,
    )
    _echo_choice(report["chosen"], dtype)
    if confirm and report["chosen"]["config"]:
        report["test"] = _confirm_on_test(report["chosen"]["config"], data_dir, datasets, dtype, search, model)
    report["seconds"] = time.perf_counter() - started
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2))
    if write_default:
        path = write_default_file(report, " ".join(["jobs", *sys.argv[1:]]), data_dir)
        click.echo(f"wrote {path}")


def _echo_choice(chosen: dict[str, Any], dtype: str) -> None:
    click.echo(
        f"chosen: {chosen['config'] or 'unpruned'}  speed-up {chosen['speedup']:.2f}x over unpruned {dtype}, "
        f"tokens kept {100 * chosen['tokens_kept']:.1f}%, worst task drop {chosen['worst_drop_pt']:.2f} pt"
    )
    for task, drop in chosen["drops_pt"].items():
        click.echo(f"  {task}: accuracy {100 * chosen['accuracy'][task]:.1f} (drop {drop:+.2f} pt)")


def _confirm_on_test(
    cfg: dict[str, Any], data_dir: str, datasets: tuple[str, ...], dtype: str, search: dict[str, Any], model: str | None
) -> dict[str, Any]:
    """The chosen config against unpruned on the test splits, which the search never read."""
    from prune.search.eval_run import render_markdown, run_eval
    from prune.search.evaluate import EvalSettings, Variant

    short = {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype)
    spec = f"{short}:s={cfg['min_tokens']},q={cfg['quantile']},l={cfg['layer']},score={cfg['score']}"
    variants = [Variant.parse(short), Variant.parse(spec)]
    test = run_eval(data_dir, datasets, variants, EvalSettings(), "test", search["timing_repeats"], model=model)
    click.echo("\non the test splits (not used by the search):\n" + render_markdown(test))
    return test


@click.command("train-scorer")
@data_dir_option
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
@model_option
@click.option(
    "--out",
    type=OutputFile((".safetensors",)),
    default=None,
    help="Output file (default: <JOBS_HOME>/scorers/<model fingerprint>.safetensors, found by score=learned).",
)
def train_scorer(
    data_dir: str, datasets: tuple[str, ...], max_texts: int, steps: int, model: str | None, out: str | None
) -> None:
    """Train the learned token scorer (score=learned) on unlabelled texts."""
    import random

    from prune import Encoder
    from prune.scorer import user_scorer_path
    from prune.search.data import load_split
    from prune.search.train_scorer import train_scorers

    texts = sorted({t for ds in datasets for t in load_split(data_dir, ds, "train").texts})
    texts = random.Random(0).sample(texts, min(max_texts, len(texts)))
    encoder = Encoder(model)
    path = Path(out) if out else user_scorer_path(encoder.fingerprint)
    train_scorers(encoder, texts, path, steps=steps, log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path} ({len(texts)} unlabelled texts from {', '.join(datasets)} train)")
