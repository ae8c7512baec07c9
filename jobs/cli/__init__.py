"""The `jobs` command line. Every error is mapped to an exit code here, and only here.

Exit codes: 0 ok, 1 unexpected failure (a bug: traceback shown), 2 bad input or usage (every
``prune.errors.BadInput``: a bad option, file, model, unknown tenant, a head built with another
model), 3 Redis unavailable (unreachable, wrong password, or the embedded server failed to
start, or lost during a job), 4 a job that did not complete (dead-lettered units, every actor
lost, an output folder owned by another job), 5 storage failed (input or output unreachable,
read-only, full, no permission), 130 interrupted (SIGINT or SIGTERM). Codes 3, 4, 5 and 130 of
a job that exists say how to resume it.
"""

import signal
import sys
from typing import NoReturn

import click

from jobs.cli.model import encode, eval_command, train_scorer, tune_command
from jobs.cli.models import models_group
from jobs.cli.query import query
from jobs.cli.report import report_group
from jobs.cli.submit import demo, forget, submit
from jobs.cli.tenants import redis_group, tenants
from jobs.errors import EmbeddedRedisError, JobError, JobIncomplete, JobInterrupted, StorageError
from prune.errors import BadInput
from workers.connection import redact
from workers.errors import RedisUnavailable

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_JOB_INCOMPLETE = 4
EXIT_STORAGE = 5
EXIT_INTERRUPTED = 130


@click.group()
def main() -> None:
    """Few-shot intent classification of utterance logs as a distributed batch job."""


for command in (
    demo,
    encode,
    eval_command,
    tune_command,
    train_scorer,
    tenants,
    redis_group,
    submit,
    forget,
    query,
    report_group,
    models_group,
):
    main.add_command(command)

EXIT_CODES: tuple[tuple[tuple[type[Exception], ...], int], ...] = (
    ((JobIncomplete, JobError), EXIT_JOB_INCOMPLETE),
    ((RedisUnavailable, EmbeddedRedisError), EXIT_UNAVAILABLE),
    ((BadInput,), EXIT_BAD_INPUT),
    ((StorageError,), EXIT_STORAGE),
    ((JobInterrupted,), EXIT_INTERRUPTED),
)


def exit_code(exc: Exception) -> int | None:
    """The documented exit code of an expected error; None for a bug."""
    return next((code for kinds, code in EXIT_CODES if isinstance(exc, kinds)), None)


def _terminated(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM is handled like SIGINT: a job says how to resume it


def entry() -> None:
    """Console-script entry point: runs the CLI and maps errors to exit codes."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise  # a bug: the traceback is shown and the exit code is 1
        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(code)
