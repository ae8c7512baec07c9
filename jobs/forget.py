"""Forgetting a job: its queue, its pinned heads and its claim on an output folder leave Redis.

For a job whose driver died while creating it, or one that will never be resumed. The files it
wrote stay; a later job may then take its folder with --overwrite.
"""

from __future__ import annotations

import redis

from jobs.errors import JobError
from jobs.output import release
from workers.queue import WorkQueue
from workers.tenant_store import CentroidStore


def forget_job(client: redis.Redis, prefix: str, job_id: str, force: bool) -> str:
    """Delete the job's keys; refuses a job with unfinished units unless ``force``. Returns a summary."""
    queue = WorkQueue(client, prefix, job_id)
    store = CentroidStore(client, prefix)
    pinned = store.pinned(job_id).tenants()
    if not queue.exists() and not pinned:
        raise JobError(f"job {job_id!r} is not known to this Redis (prefix {prefix!r}); nothing to forget")
    try:
        output = queue.config()["spec"]["output"]
    except KeyError:  # never fully created: nothing of it ran
        output = None
    progress = queue.progress()
    left = progress.total - progress.done - progress.dead
    if output is not None and left > 0 and not force:
        raise JobError(
            f"job {job_id} has {left} of {progress.total} units unfinished: resume it with --resume {job_id}, "
            "or pass --force if it will never be resumed (its driver and actors must be gone)"
        )
    queue.forget()
    store.unpin(job_id)
    if output is not None:
        release(client, prefix, output, job_id)
    state = "never fully created" if output is None else f"{progress.done} of {progress.total} units done"
    return f"job {job_id} forgotten ({state}); the files it wrote, if any, stay where they are"
