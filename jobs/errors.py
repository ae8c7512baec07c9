"""The driver's and the CLI's exceptions; jobs.cli maps each family to one exit code."""

from prune.errors import BadInput


class JobError(RuntimeError):
    """The job cannot start or cannot finish; the message says why (exit 4)."""


class JobIncomplete(RuntimeError):
    """The job ended with units that failed (dead-lettered): no _SUCCESS (exit 4)."""


class StorageError(RuntimeError):
    """Input or output storage failed: unreachable, read-only, full, no permission (exit 5)."""


class JobInterrupted(RuntimeError):
    """SIGINT or SIGTERM while a job ran; the message says how to resume it (exit 130)."""


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started (exit 3)."""


class PlanError(BadInput):
    """The input cannot be classified as given; the message lists every problem found."""


class ResumeError(BadInput):
    """A --resume that cannot continue the stored job as given: its input changed, an option
    differs from the job's, or the job was never fully created (exit 2)."""


class ExamplesError(BadInput):
    """The examples file cannot be used; the message says what to fix."""


class TextsError(BadInput):
    """Texts to embed that cannot be read as given; the message names the lines."""


class QueryError(BadInput):
    """A query that cannot run as given; the message says what was expected and what was found."""


class ReportError(BadInput):
    """A report that cannot be read; the message says where and why."""
