"""The `jobs` command line. Every error is mapped to an exit code here, and only here.

Exit codes: 0 ok, 1 unexpected failure (a bug: traceback shown), 2 bad input or usage.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import click

from prune import Encoder, EncoderOptions, ModelError, PruneConfig
from prune.config import DTYPES
from prune.head import centroid_head

EXIT_BAD_INPUT = 2
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


def _prune_option(
    ctx: click.Context | None, param: click.Parameter | None, value: str | None
) -> PruneConfig | None:
    if value is None or value.lower() in ("", "none", "off"):
        return None
    try:
        return PruneConfig.parse(value)
    except ValueError as exc:
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
    except (ModelError, ValueError, TypeError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
