"""The `jobs` command line. Every error is mapped to an exit code here, and only here.

Exit codes: 0 ok, 1 unexpected failure (a bug: traceback shown), 2 bad input or usage
(including an unknown tenant or a head built with another model), 3 Redis unavailable
(unreachable, wrong password, or the embedded server failed to start), 4 a job that did not
complete (dead-lettered units, every actor lost, an output folder owned by another job).
"""

import sys

import click

from jobs import embedded_redis
from jobs.cli_model import encode, eval_command, train_scorer, tune_command
from jobs.cli_query import query
from jobs.cli_report import report_group
from jobs.cli_submit import JobIncomplete, demo, submit
from jobs.cli_tenants import redis_group, tenants
from jobs.run import JobError
from prune import ModelError
from workers.connection import RedisUnavailable, redact
from workers.store import UnknownTenant

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_JOB_INCOMPLETE = 4


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
    query,
    report_group,
):
    main.add_command(command)


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
