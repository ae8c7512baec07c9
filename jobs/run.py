"""The classify job's driver: plan, enqueue, start one actor per node, watch, report.

The driver holds no rows: only the plan (file metadata) and the queue's counters, so its
memory does not grow with the input. If it dies, `--resume JOB_ID` re-plans (same unit ids),
finds the job's units already enqueued, starts new actors, and the units that the old actors
left pending are taken over once idle; finished units are never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis

from jobs.errors import JobError, JobIncomplete, JobInterrupted, ResumeError, StorageError
from jobs.fleet import drive
from jobs.output import REPORT, SUCCESS, claim_output, holds, reconcile
from jobs.plan import Plan, check_apart, cut_tail, encodable_rows, plan
from jobs.report import build_report
from jobs.report_schema import Report
from prune.config import int8_min_rows
from prune.errors import BadInput, Int8Unavailable, ModelError
from prune.models.files import check_model
from workers.connection import connect, redact
from workers.errors import RedisUnavailable
from workers.fault_points import fault_point
from workers.job_spec import JobAddress, JobSpec
from workers.labels import EMPTY_PART, empty_part
from workers.parquet_io import write_part, write_text
from workers.queue import WorkQueue
from workers.tenant_store import CentroidStore
from workers.unit import UnitStats


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def units_digest(p: Plan) -> str:
    return hashlib.sha1("\n".join(u.id for u in p.units).encode()).hexdigest()


def _check_model(spec: JobSpec) -> None:
    """A bad --model or a prune layer it does not have fails here, not in every actor. The
    directory must be readable at the same path by the driver and by every node."""
    _, config = check_model(spec.model)
    if spec.prune:
        spec.prune.check_layers(config.num_hidden_layers)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# Ray binds its servers, its dashboard's head process and its metrics exporters to the node's
# address, which it takes as 127.0.0.1 when its cluster mode is off. Read at import by Ray, and by
# every process it starts from the environment.
RAY_CLUSTER_MODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray(address: str | None) -> None:
    """Connect to ``address``, or start a Ray of this job's own. SIGTERM stays an interrupt that
    ends in a resume hint (Ray installs a handler of its own that just exits)."""
    if not address:
        _loopback_only()
    import ray

    if ray.is_initialized():
        return
    try:
        _start_ray(ray, address)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)


def _start_ray(ray: Any, address: str | None) -> None:
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # A Ray of its own, even when another runs on this machine (without "local", ray.init
        # joins that one and refuses num_cpus). No dashboard, and every server on loopback.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def _loopback_only() -> None:
    """The local default's Ray listens on 127.0.0.1 only: nothing of it is reachable from the network."""
    os.environ[RAY_CLUSTER_MODE_ENV] = "0"  # for the processes Ray starts
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # for this process, in case Ray was imported before


# an actor's CPUs by default: a cluster node's (cluster.yaml's m7i.xlarge), at most the machine's locally
DEFAULT_CPUS_PER_ACTOR = 4


def _placement(spec: JobSpec, local: bool, log: Callable[[str], object] = print) -> tuple[int, int]:
    """(actors, cpus per actor) resolved against the cluster: fail early if no actor can fit. On a
    remote cluster more actors than fit now is allowed (the autoscaler adds nodes for them)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = sorted((int(n["Resources"].get("CPU", 0)) for n in nodes), reverse=True)
    if not node_cpus:
        raise JobError("the Ray cluster has no live node; check --ray-address and `ray status`")
    cpus = spec.cpus_per_actor or (min(DEFAULT_CPUS_PER_ACTOR, node_cpus[0]) if local else DEFAULT_CPUS_PER_ACTOR)
    if node_cpus[0] < cpus:
        raise JobError(
            f"no node has {cpus} CPUs for an actor (node CPUs: {node_cpus}); lower --cpus-per-actor or add bigger nodes"
        )
    fitting = sum(c // cpus for c in node_cpus)
    actors = spec.actors or max(1, sum(1 for c in node_cpus if c >= cpus))
    if actors > fitting and not local:
        log(f"{actors} actors of {cpus} CPUs; {fitting} fit now (node CPUs: {node_cpus}); the rest wait for nodes")
    elif actors > fitting:
        raise JobError(
            f"{actors} actors of {cpus} CPUs do not fit the cluster (node CPUs: {node_cpus}); at most {fitting}"
        )
    return actors, cpus


def _rows_to_encode(job: _Job, client: redis.Redis, prefix: str, p: Plan) -> int:
    """The planned rows, or for ``--dtype auto`` where int8 might pay, those that need encoding
    (a tenant with a head): rows of unknown tenants would otherwise buy int8's load for nothing."""
    if job.spec.dtype != "auto" or p.rows < int8_min_rows(built=True):
        return p.rows
    tenants = set(CentroidStore(client, prefix).pinned(job.id).tenants())
    return encodable_rows(p, job.spec.columns, tenants)


def _check_int8_here(spec: JobSpec) -> None:
    """An explicit --dtype int8 on the local default: this machine says what int8 needs here."""
    from workers.job_encoder import int8_problem

    problem = int8_problem(spec)
    if problem:
        raise Int8Unavailable(f"--dtype int8 cannot run on 1 node(s): {problem}")


def _check_every_node(spec: JobSpec) -> None:
    """On a cluster, the job runs on every live node or is not created: each node says whether it
    has the job's model (a name must be installed on each) and, for an explicit --dtype int8, what
    int8 needs there (its built graphs, or a C++ compiler to build them)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from workers.job_encoder import node_problem

    check = ray.remote(num_cpus=0, max_retries=0)(node_problem)
    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
    refs = [
        check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(spec) for n in nodes
    ]
    problems = [p for p in ray.get(refs) if p]
    if not problems:
        return
    message = f"cannot run on {len(problems)} node(s): {'; '.join(problems)}"
    if spec.dtype == "int8" and all("int8" in p for p in problems):
        raise Int8Unavailable(f"--dtype int8 {message}")
    raise ModelError(f"the job's model {message} (list the model in deploy/models.txt and `ray up` again)")


@dataclass(frozen=True)
class _Job:
    id: str
    spec: JobSpec
    queue: WorkQueue
    stored: dict[str, Any] | None  # the config stored at submit, when resuming


def run_job(
    spec: JobSpec | None,
    *,
    redis_url: str,
    prefix: str,
    ray_address: str | None = None,
    job_id: str | None = None,
    resume: str | None = None,
    given: dict[str, tuple[str, Any]] | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    log: Callable[[str], object] = print,
    overwrite: bool = False,
) -> Report:
    """Run (or resume) a job to the end; returns the report written as ``_report.json``. Redis,
    storage and interruptions end it with an error that says how to resume it. ``given``: the
    options given with ``--resume`` (spec field -> (option, value)); any that differs from the
    stored job is refused, except the placement (--actors, --cpus-per-actor), which applies."""
    started = time.time()
    client = connect(redis_url)
    job = _open(client, prefix, spec, job_id, resume, given or {})
    try:
        return _run(job, client, prefix, redis_url, ray_address, overwrite, started, on_progress, log)
    except (RedisUnavailable, StorageError, JobError, JobIncomplete, BadInput):
        raise
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"lost Redis while running job {job.id} ({_reason(exc)}){_resume_hint(job)}") from None
    except OSError as exc:
        raise StorageError(f"storage failed while running job {job.id}: {_reason(exc)}{_resume_hint(job)}") from None
    except KeyboardInterrupt:
        raise JobInterrupted(f"job {job.id} interrupted{_resume_hint(job)}") from None


def _reason(exc: BaseException) -> str:
    """One line of an error: an actor's error raised through Ray carries its remote traceback,
    of which only the cause's message is kept."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return redact(lines[0].strip()) if lines else type(cause).__name__


def _resume_hint(job: _Job) -> str:
    try:
        known = job.queue.exists()
    except redis.RedisError:
        known = True  # it may well exist: Redis cannot say
    return f"; once fixed, continue it with --resume {job.id}" if known else ""


def _run(
    job: _Job,
    client: redis.Redis,
    prefix: str,
    redis_url: str,
    ray_address: str | None,
    overwrite: bool,
    started: float,
    on_progress: Callable[[int, int, int], None] | None,
    log: Callable[[str], object],
) -> Report:
    """Check, plan, place, enqueue, claim the output, drive the actors, finish."""
    _check_model(job.spec)
    check_apart(job.spec.input, job.spec.output)
    resuming = job.stored is not None
    claim_output(client, prefix, job.spec.output, job.id, resuming, overwrite, take=False)  # fail before any work
    planned = _plan(job)
    if job.spec.dtype == "int8" and ray_address is None:
        _check_int8_here(job.spec)  # the local default's one node is this machine: before Ray starts
    init_ray(ray_address)
    actors, cpus = _placement(job.spec, local=ray_address is None, log=log)
    if ray_address is not None and (job.spec.dtype == "int8" or job.spec.model is not None):
        _check_every_node(job.spec)
    planned = _enqueue(job, client, prefix, planned, actors * cpus, started, log)
    claim_output(client, prefix, job.spec.output, job.id, resuming, overwrite)  # once the job exists: resumable
    fault_point("claimed")
    address = JobAddress(redis_url=redis_url, prefix=prefix, job_id=job.id)
    rows_of = {u.id: u.rows for u in planned.units}
    # each actor decides its dtype for its node; how many rows it will encode decides whether int8 pays
    per_actor = -(-_rows_to_encode(job, client, prefix, planned) // actors)
    spec = replace(job.spec, actors=actors, cpus_per_actor=cpus, rows_per_actor=per_actor)
    infos = drive(job.queue, spec, address, actors, cpus, rows_of, on_progress, log) if planned.units else []
    return _finish(job, client, prefix, spec, planned, infos, started, redis_url)


def _open(
    client: Any, prefix: str, spec: JobSpec | None, job_id: str | None, resume: str | None, given: dict[str, Any]
) -> _Job:
    """A new job from its spec, or the stored job to resume."""
    job_id = resume or job_id or new_job_id()
    queue = WorkQueue(client, prefix, job_id)
    stored = None
    if resume:
        if not queue.exists():
            raise JobError(
                f"job {resume!r} is not known to this Redis (prefix {prefix!r}); nothing to resume (a job whose "
                f"driver stopped while creating it was never created: submit it again with --job-id {resume})"
            )
        stored = _stored_config(queue)
        spec = _resumed_spec(JobSpec.from_dict(stored["spec"]), given)
    elif spec is None:
        raise JobError("a job needs a spec, or --resume JOB_ID")
    elif queue.exists():
        _stored_config(queue)  # a half-created job says how to clear it
        raise JobError(f"job {job_id!r} already exists; continue it with --resume {job_id}")
    elif spec.columns.fixed_tenant:  # --tenant names a tenant that exists, or nothing starts
        CentroidStore(client, prefix).get(spec.columns.fixed_tenant)
    queue = WorkQueue(client, prefix, job_id, spec.max_attempts, spec.claim_idle_ms)
    return _Job(job_id, spec, queue, stored)


def _stored_config(queue: WorkQueue) -> dict[str, Any]:
    try:
        return queue.config()
    except KeyError:
        raise ResumeError(
            f"job {queue.job_id!r} was not fully created (its driver stopped while creating it), so none of it "
            f"ran; clear it with `jobs forget {queue.job_id}`, then submit it again"
        ) from None


PLACEMENT = ("actors", "cpus_per_actor")  # may change on a resume: where the job runs, not what it computes


def _resumed_spec(stored: JobSpec, given: dict[str, tuple[str, Any]]) -> JobSpec:
    """The stored spec, with the placement given on the command line; any other option given
    that differs from the stored job is refused, naming each."""
    d = stored.to_dict()
    conflicts = []
    for path, (option, value) in given.items():
        *parents, name = path.split(".")
        holder = d
        for parent in parents:
            holder = holder[parent]
        if name in PLACEMENT:
            holder[name] = value
        elif holder[name] != value:
            conflicts.append(f"{option} {_shown(value)} (the job has {_shown(holder[name])})")
    if conflicts:
        raise ResumeError(
            f"--resume continues the job as it was submitted, but {'; '.join(conflicts)}; drop these options, "
            "or start a new job to run with them"
        )
    return JobSpec.from_dict(d)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return "none" if value is None else str(value)


def _plan(job: _Job) -> Plan:
    """The job's units; a resumed job must plan exactly the units it was created with, from files
    whose content has not changed since."""
    p = plan(job.spec.input, job.spec.columns, job.spec.unit_rows)
    if job.stored is None:
        return p
    stored_files: dict[str, str] | None = job.stored.get("files")
    if stored_files is not None:
        changed = sorted(set(stored_files) ^ set(p.versions)) + sorted(
            f for f in set(stored_files) & set(p.versions) if stored_files[f] != p.versions[f]
        )
        if changed:
            shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
            raise ResumeError(
                f"the input of job {job.id} changed since it was planned ({len(changed)} file(s) added, removed "
                f"or rewritten: {shown}); a resume would mix old and new rows: start a new job instead"
            )
    p = cut_tail(p, job.stored.get("tail", 0))
    if units_digest(p) != job.stored["units_digest"]:
        raise ResumeError(
            f"the input of job {job.id} changed since it was planned (different units); "
            f"start a new job instead of resuming"
        )
    return p


def _enqueue(
    job: _Job, client: redis.Redis, prefix: str, p: Plan, streams: int, started: float, log: Callable[[str], object]
) -> Plan:
    """A new job: its tenants' heads pinned, then its units on the queue, the last one per encode
    stream cut finer. A resumed job: its dead units get a fresh set of attempts."""
    if job.stored is not None:
        again = job.queue.requeue_dead()
        done = job.queue.progress().done
        log(f"job {job.id}: resuming, {done} of {len(p.units)} units done, {len(again)} dead units retried")
        return p
    p = cut_tail(p, streams)
    fixed = job.spec.columns.fixed_tenant
    versions = CentroidStore(client, prefix).pin(job.id, [fixed] if fixed else None)
    config = {
        "spec": job.spec.to_dict(),
        "units_digest": units_digest(p),
        "files": p.versions,
        "tail": streams,
        "rows": p.rows,
        "created": started,
        "tenant_versions": versions,
    }
    if not job.queue.create([u.to_dict() for u in p.units], config):
        raise JobError(f"job {job.id!r} was created meanwhile by another driver; continue it with --resume")
    log(f"job {job.id}: {len(p.units)} units, {p.rows} rows from {len(p.files)} files")
    return p


def _finish(
    job: _Job,
    client: redis.Redis,
    prefix: str,
    spec: JobSpec,
    p: Plan,
    infos: list[dict[str, Any]],
    started: float,
    redis_url: str,
) -> Report:
    """The part files checked against the queue's record, the report, then _SUCCESS only if every
    planned unit is done and its part file holds its rows; never over another job's files."""
    if not holds(client, prefix, spec.output, job.id):
        raise JobError(
            f"output {spec.output} no longer belongs to job {job.id} (another job claimed it); its report and "
            "_SUCCESS were not written there"
        )
    done = {u: UnitStats(**d) for u, d in job.queue.done_stats().items()}
    dead = job.queue.dead_letters()
    for unit, error in reconcile(spec.output, job.id, {u.id: u.rows for u in p.units}, set(done)).items():
        del done[unit]
        dead.append({"unit": unit, "error": error})
    if not p.units:  # input files without rows: still an output that reads as the job's columns
        columns = tuple(c for c in (spec.columns.text, spec.columns.tenant) if c)
        write_part(empty_part(p.schema, columns), spec.output, EMPTY_PART, {"job_id": job.id, "unit": EMPTY_PART})
    report = build_report(job.id, spec, p, done, dead, infos, time.time() - started, redis_url)
    try:
        write_text(spec.output, REPORT, json.dumps(report.to_dict(), indent=2, allow_nan=False), job.id)
    except OSError as exc:
        if not report.dead_units:
            raise
        # the storage that failed the units (a full disk) fails the report too: the job is still incomplete
        raise JobIncomplete(
            f"{len(report.dead_units)} unit(s) ({report.rows.dead} rows) failed and were dead-lettered, and "
            f"_report.json could not be written either ({_reason(exc)}); no _SUCCESS written. First cause: "
            f"{report.dead_units[0].error.splitlines()[0]}. Once fixed, retry them with --resume {job.id}"
        ) from None
    if not report.dead_units and report.rows.written == report.rows.planned:
        write_text(spec.output, SUCCESS, job.id, job.id)  # the job's id: proof of who wrote it (jobs.output)
    return report
