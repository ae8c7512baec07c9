"""Options and helpers shared by the `jobs` commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobs import embedded_redis
from prune import EncoderOptions, PruneConfig
from prune.config import DEFAULT_TOKEN_BUDGET, DTYPE_CHOICES, INT8_MIN_ROWS, INT8_MIN_ROWS_BUILT, resolve_dtype
from prune.errors import ModelError
from workers.connection import connect
from workers.errors import InvalidName
from workers.tenant_store import CentroidStore, validate_prefix

if TYPE_CHECKING:
    from prune import Encoder

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
DTYPE_HELP = (
    "bfloat16 runs matmuls in bf16 (about 2x faster on CPUs with AMX or AVX512-BF16, several times "
    "slower without); auto picks it only where the CPU has it natively, else float32. int8 runs "
    "static int8 layers (needs torchao): calibrated and built once per model, pruning and CPU, which "
    "takes a C++ compiler and about a minute and a half, then loaded in seconds from the user's data "
    "folder (JOBS_INT8_CACHE names another). In a classify job, auto means int8 on a node with "
    f"AMX-INT8 or AVX512-VNNI when each encode stream has at least {INT8_MIN_ROWS_BUILT:,} rows to "
    f"encode ({INT8_MIN_ROWS:,} while the graphs are still to build), and only where int8 can run."
)


class OutputFile(click.Path):
    """A file the command writes, checked before any work: its folder must exist and be writable
    (an eval or a tune would otherwise fail at the end, after minutes, with a traceback), and its
    name must end in one of ``suffixes`` when given."""

    def __init__(self, suffixes: tuple[str, ...] = ()) -> None:
        super().__init__(dir_okay=False, writable=True)
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        path = Path(value)
        folder = path.parent
        if not folder.is_dir():
            self.fail(f"the folder {str(folder)!r} of {str(value)!r} does not exist; create it first", param, ctx)
        if not os.access(folder, os.W_OK):
            self.fail(f"the folder {str(folder)!r} of {str(value)!r} is not writable", param, ctx)
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            self.fail(f"{str(value)!r} must end in {' or '.join(self.suffixes)}", param, ctx)
        return value


def prune_option(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> PruneConfig | None:
    if value is None or value.lower() in ("", "none", "off"):
        return None
    try:
        if value == "tuned":  # the model's own (--model is eager, so it is known here)
            from prune.config import tuned_default

            return tuned_default(ctx.params.get("model") if ctx else None)
        return PruneConfig.parse(value)
    except (ValueError, FileNotFoundError, ModelError) as exc:
        raise click.BadParameter(str(exc)) from exc


def model_option(fn):
    """--model, as every command that reads a model takes it. Eager: processed before --prune,
    whose ``tuned`` is the model's own."""
    return click.option(
        "--model",
        type=click.Path(file_okay=False),
        default=None,
        is_eager=True,
        metavar="DIR|NAME",
        help="A sentence-transformers model folder (BERT or MPNet), or the name of an installed model "
        "(`jobs models list`). Default: the packaged all-MiniLM-L6-v2.",
    )(fn)


def token_budget_option(fn):
    """--token-budget: rows x padded length per encoder batch, in every command that encodes."""
    return click.option(
        "--token-budget",
        type=click.IntRange(min=1),
        default=DEFAULT_TOKEN_BUDGET,
        show_default=True,
        help="Max rows x padded length per batch.",
    )(fn)


def encoder_options(fn):
    """The options of the commands that encode for a user to look at (encode, eval): fp32 and no
    pruning by default, the reference the job's encoder is measured against."""
    fn = token_budget_option(fn)
    fn = click.option(
        "--dtype",
        type=click.Choice(DTYPE_CHOICES),
        default="float32",
        show_default=True,
        help=DTYPE_HELP,
    )(fn)
    fn = click.option(
        "--prune",
        "prune",
        default=None,
        callback=prune_option,
        metavar="s=INT,q=FLOAT,l=INT[,score=NAME]",
        help="Token pruning config, or 'none' (default: none).",
    )(fn)
    return model_option(fn)


def job_encoder_options(fn):
    """--prune (default: the tuned config) and --dtype (default: auto) of the commands that run a job."""
    fn = click.option("--dtype", type=click.Choice(DTYPE_CHOICES), default="auto", show_default=True, help=DTYPE_HELP)(
        fn
    )
    return click.option(
        "--prune",
        default="tuned",
        show_default=True,
        callback=prune_option,
        metavar="s=INT,q=FLOAT,l=INT[,score=NAME]|tuned|none",
        help="Token pruning config.",
    )(fn)


def build_encoder(model: str | None, prune: PruneConfig | None, dtype: str, token_budget: int) -> Encoder:
    from prune import Encoder

    return Encoder(model, prune, EncoderOptions(dtype=resolve_dtype(dtype), token_budget=token_budget))


def csv_of(kind: type) -> Callable[[click.Context | None, click.Parameter | None, str], tuple]:
    def parse(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple:
        try:
            out = tuple(kind(x.strip()) for x in value.split(",") if x.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {kind.__name__} values, got {value!r}") from None
        if not out:
            raise click.BadParameter("expected at least one value")
        return out

    return parse


def csv_ints(ctx: click.Context | None, param: click.Parameter | None, value: str) -> tuple[int, ...]:
    out = csv_of(int)(ctx, param, value)
    if min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


def _prefix_option(ctx: click.Context | None, param: click.Parameter | None, value: str) -> str:
    try:
        return validate_prefix(value)
    except InvalidName as exc:
        raise click.BadParameter(str(exc)) from None


def redis_options(fn):
    fn = click.option(
        "--redis-prefix",
        envvar="JOBS_REDIS_PREFIX",
        default="fsj",
        show_default=True,
        callback=_prefix_option,
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
