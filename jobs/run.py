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
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from jobs.errors import JobError
from jobs.plan import DEFAULT_UNIT_ROWS, Columns, Plan, cut_tail, plan
from jobs.report import build_report
from prune.config import DEFAULT_TOKEN_BUDGET, PruneConfig, check_dtype_choice
from prune.model import check_model
from workers.actor import ActorSettings
from workers.connection import connect
from workers.parquet_io import read_text, resolve, write_text
from workers.queue import WorkQueue


@dataclass(frozen=True)
class JobSpec:
    input: str
    output: str
    columns: Columns
    model: str | None = None
    prune: dict[str, Any] | None = None
    dtype: str = "auto"  # resolved by each actor for its own node's CPU (prune.cpu)
    actors: int | None = None  # default: one per node that fits an actor
    cpus_per_actor: int | None = None  # default: 4 on a cluster, min(4, cores) locally
    unit_rows: int = DEFAULT_UNIT_ROWS
    token_budget: int = DEFAULT_TOKEN_BUDGET
    max_attempts: int = 3
    claim_idle_ms: int = 60_000

    def __post_init__(self) -> None:
        check_dtype_choice(self.dtype)  # resolved later, by each actor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobSpec:
        return cls(**{**d, "columns": Columns(**d["columns"])})


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def units_digest(p: Plan) -> str:
    return hashlib.sha1("\n".join(u.id for u in p.units).encode()).hexdigest()


def _check_output(output: str, job_id: str) -> None:
    fs, path = resolve(output)
    fs.create_dir(path, recursive=True)
    if read_text(output, "_SUCCESS") is not None:
        raise JobError(f"output {output} already holds a finished job (_SUCCESS); choose another --output")
    owner = read_text(output, "_JOB")
    if owner is not None and owner.strip() != job_id:
        raise JobError(
            f"output {output} belongs to job {owner.strip()}; resume that job with --resume "
            f"{owner.strip()} or choose another --output"
        )


def _check_model(spec: JobSpec) -> None:
    """A bad --model or a prune layer it does not have fails here, not in every actor. The
    directory must be readable at the same path by the driver and by every node."""
    _, config = check_model(spec.model)
    if spec.prune:
        PruneConfig(**spec.prune).check_layers(config.num_hidden_layers)


def init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def _placement(spec: JobSpec, local: bool, log: Callable[[str], object] = print) -> tuple[int, int]:
    """(actors, cpus per actor) resolved against the cluster: fail early if no actor can fit. On a
    remote cluster more actors than fit now is allowed (the autoscaler adds nodes for them)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = sorted((int(n["Resources"].get("CPU", 0)) for n in nodes), reverse=True)
    cpus = spec.cpus_per_actor or (min(4, node_cpus[0]) if local else 4)
    if not node_cpus or node_cpus[0] < cpus:
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


def run_job(
    spec: JobSpec | None,
    redis_url: str,
    prefix: str,
    ray_address: str | None = None,
    job_id: str | None = None,
    resume: str | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Run (or resume) a job to the end; returns the report written as ``_report.json``."""
    import ray

    client = connect(redis_url)
    job_id = resume or job_id or new_job_id()
    queue = WorkQueue(client, prefix, job_id)
    if resume:
        if not queue.exists():
            raise JobError(f"job {resume!r} is not known to this Redis (prefix {prefix!r}); nothing to resume")
        stored = queue.config()
        spec = JobSpec.from_dict(stored["spec"])
    elif spec is None:
        raise JobError("a job needs a spec, or --resume JOB_ID")
    elif queue.exists():
        raise JobError(f"job {job_id!r} already exists; continue it with --resume {job_id}")
    assert spec is not None
    queue = WorkQueue(client, prefix, job_id, spec.max_attempts, spec.claim_idle_ms)
    started = time.time()
    _check_model(spec)
    p = plan(spec.input, spec.columns, spec.unit_rows)
    if resume:
        p = cut_tail(p, stored.get("tail", 0))
        if units_digest(p) != stored["units_digest"]:
            raise JobError(
                f"the input of job {job_id} changed since it was planned (different units); "
                f"start a new job instead of resuming"
            )
    _check_output(spec.output, job_id)
    init_ray(ray_address)
    actors, cpus = _placement(spec, local=ray_address is None, log=log)
    if not resume:
        tail = actors * cpus  # one piece of work per encode stream at the end
        p = cut_tail(p, tail)
        digest = units_digest(p)
        config = {"spec": spec.to_dict(), "units_digest": digest, "tail": tail, "rows": p.rows, "created": started}
        if not queue.create([u.to_dict() for u in p.units], config):
            raise JobError(f"job {job_id!r} was created meanwhile by another driver; continue it with --resume")
        log(f"job {job_id}: {len(p.units)} units, {p.rows} rows from {len(p.files)} files")
    else:
        log(f"job {job_id}: resuming, {queue.progress().done} of {len(p.units)} units already done")
    write_text(spec.output, "_JOB", job_id)  # once the job exists in Redis: a rerun can always resume it
    rows_of = {u.id: u.rows for u in p.units}
    settings = ActorSettings(
        job_id,
        redis_url,
        prefix,
        spec.output,
        spec.columns.text,
        spec.columns.tenant,
        spec.columns.fixed_tenant,
        spec.model,
        spec.prune,
        spec.dtype,
        spec.token_budget,
        cpus,
        spec.max_attempts,
        spec.claim_idle_ms,
    )
    infos = _drive(queue, settings, actors, cpus, rows_of, on_progress, log) if p.units else []
    wall = time.time() - started
    report = build_report(
        job_id,
        replace(spec, actors=actors, cpus_per_actor=cpus),
        p,
        queue.done_stats(),
        queue.dead_letters(),
        infos,
        wall,
        redis_url,
    )
    write_text(spec.output, "_report.json", json.dumps(report, indent=2))
    if not report["dead_units"]:
        write_text(spec.output, "_SUCCESS", "")
    del ray
    return report


def _drive(
    queue: WorkQueue,
    settings: ActorSettings,
    actors: int,
    cpus: int,
    rows_of: dict[str, int],
    on_progress: Callable[[int, int, int], None] | None,
    log: Callable[[str], object],
) -> list[dict[str, Any]]:
    import ray
    from ray.exceptions import RayActorError

    from workers.actor import ClassifierActor, settings_dict

    infos: list[dict[str, Any]] = []
    pending_info: dict[Any, int] = {}  # info() ref -> actor index

    def start(i: int) -> tuple[Any, Any]:
        actor = ClassifierActor.options(num_cpus=cpus, scheduling_strategy="SPREAD").remote(
            settings_dict(settings), f"{settings.job_id}-actor-{i}"
        )
        pending_info[actor.info.remote()] = i  # answered once the actor is up, before its run() starts
        return actor, actor.run.remote()

    running = dict(start(i) for i in range(actors))  # actor handle -> run() ref
    restarts, next_index, total = 0, actors, len(rows_of)
    while True:
        progress = queue.progress()
        if on_progress:
            done_rows = sum(rows_of.get(u, 0) for u in queue.done_units())
            on_progress(done_rows, progress.done, progress.dead)
        if pending_info:
            answered, _ = ray.wait(list(pending_info), num_returns=len(pending_info), timeout=0)
            for ref in answered:
                idx = pending_info.pop(ref)
                try:
                    infos.append(ray.get(ref))
                except RayActorError as exc:
                    log(f"actor {idx} did not start: {exc}")
        refs = {ref: a for a, ref in running.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.5) if refs else ([], [])
        for ref in ready:
            actor = refs[ref]
            del running[actor]
            try:
                ray.get(ref)
            except RayActorError as exc:
                log(f"an actor died ({type(exc).__name__}); its units will be taken over")
                if not queue.progress().finished and restarts < 3 * actors:
                    restarts += 1
                    new, new_ref = start(next_index)
                    next_index += 1
                    running[new] = new_ref
        if not running:  # the last actors may have finished the job during the wait
            progress = queue.progress()
        if progress.finished:
            break
        if not running:
            raise JobError(
                f"every actor died and the restart budget is spent; {progress.done + progress.dead} "
                f"of {total} units finished; resume with --resume {settings.job_id}"
            )
    for a, ref in list(running.items()):  # they return by themselves once the queue is drained
        try:
            ray.get(ref, timeout=10)
        except Exception:  # never started (e.g. no node left for it), or stuck: not needed any more
            ray.kill(a)
    return infos
