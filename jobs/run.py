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
from dataclasses import dataclass, replace
from typing import Any

from jobs.errors import JobError
from jobs.plan import Plan, cut_tail, plan
from jobs.report import build_report
from jobs.report_schema import Report
from prune.model import check_model
from workers.actor import JobAddress
from workers.connection import connect
from workers.job_spec import JobSpec
from workers.parquet_io import read_text, resolve, write_text
from workers.queue import WorkQueue
from workers.unit_stats import UnitStats


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
        spec.prune.check_layers(config.num_hidden_layers)


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
    if not node_cpus:
        raise JobError("the Ray cluster has no live node; check --ray-address and `ray status`")
    cpus = spec.cpus_per_actor or (min(4, node_cpus[0]) if local else 4)
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


@dataclass(frozen=True)
class _Job:
    id: str
    spec: JobSpec
    queue: WorkQueue
    stored: dict[str, Any] | None  # the config stored at submit, when resuming


def run_job(
    spec: JobSpec | None,
    redis_url: str,
    prefix: str,
    ray_address: str | None = None,
    job_id: str | None = None,
    resume: str | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
    log: Callable[[str], object] = print,
) -> Report:
    """Run (or resume) a job to the end; returns the report written as ``_report.json``."""
    started = time.time()
    job = _open(connect(redis_url), prefix, spec, job_id, resume)
    _check_model(job.spec)
    planned = _plan(job)
    _check_output(job.spec.output, job.id)
    init_ray(ray_address)
    actors, cpus = _placement(job.spec, local=ray_address is None, log=log)
    planned = _enqueue(job, planned, actors * cpus, started, log)
    write_text(job.spec.output, "_JOB", job.id)  # once the job exists in Redis: a rerun can always resume it
    address = JobAddress(redis_url=redis_url, prefix=prefix, job_id=job.id)
    rows_of = {u.id: u.rows for u in planned.units}
    infos = _drive(job.queue, job.spec, address, actors, cpus, rows_of, on_progress, log) if planned.units else []
    return _finish(job, replace(job.spec, actors=actors, cpus_per_actor=cpus), planned, infos, started, redis_url)


def _open(client: Any, prefix: str, spec: JobSpec | None, job_id: str | None, resume: str | None) -> _Job:
    """A new job from its spec, or the stored job to resume."""
    job_id = resume or job_id or new_job_id()
    queue = WorkQueue(client, prefix, job_id)
    stored = None
    if resume:
        if not queue.exists():
            raise JobError(f"job {resume!r} is not known to this Redis (prefix {prefix!r}); nothing to resume")
        stored = queue.config()
        spec = JobSpec.from_dict(stored["spec"])
    elif spec is None:
        raise JobError("a job needs a spec, or --resume JOB_ID")
    elif queue.exists():
        raise JobError(f"job {job_id!r} already exists; continue it with --resume {job_id}")
    queue = WorkQueue(client, prefix, job_id, spec.max_attempts, spec.claim_idle_ms)
    return _Job(job_id, spec, queue, stored)


def _plan(job: _Job) -> Plan:
    """The job's units; a resumed job must plan exactly the units it was created with."""
    p = plan(job.spec.input, job.spec.columns, job.spec.unit_rows)
    if job.stored is None:
        return p
    p = cut_tail(p, job.stored.get("tail", 0))
    if units_digest(p) != job.stored["units_digest"]:
        raise JobError(
            f"the input of job {job.id} changed since it was planned (different units); "
            f"start a new job instead of resuming"
        )
    return p


def _enqueue(job: _Job, p: Plan, streams: int, started: float, log: Callable[[str], object]) -> Plan:
    """A new job's units on the queue, the last one per encode stream cut finer."""
    if job.stored is not None:
        log(f"job {job.id}: resuming, {job.queue.progress().done} of {len(p.units)} units already done")
        return p
    p = cut_tail(p, streams)
    config = {
        "spec": job.spec.to_dict(),
        "units_digest": units_digest(p),
        "tail": streams,
        "rows": p.rows,
        "created": started,
    }
    if not job.queue.create([u.to_dict() for u in p.units], config):
        raise JobError(f"job {job.id!r} was created meanwhile by another driver; continue it with --resume")
    log(f"job {job.id}: {len(p.units)} units, {p.rows} rows from {len(p.files)} files")
    return p


def _finish(job: _Job, spec: JobSpec, p: Plan, infos: list[dict[str, Any]], started: float, redis_url: str) -> Report:
    """The report, then _SUCCESS if every unit is done."""
    done = {u: UnitStats(**d) for u, d in job.queue.done_stats().items()}
    report = build_report(job.id, spec, p, done, job.queue.dead_letters(), infos, time.time() - started, redis_url)
    write_text(spec.output, "_report.json", json.dumps(report.to_dict(), indent=2))
    if not report.dead_units:
        write_text(spec.output, "_SUCCESS", "")
    return report


class _Fleet:
    """The job's actors: started, watched, and replaced when one dies (within a budget)."""

    def __init__(self, spec: JobSpec, job: JobAddress, actors: int, cpus: int, log: Callable[[str], object]) -> None:
        self.spec, self.job, self.cpus, self.log = spec, job, cpus, log
        self.infos: list[dict[str, Any]] = []
        self.pending_info: dict[Any, int] = {}  # info() ref -> actor index
        self.running: dict[Any, Any] = {}  # actor handle -> run() ref
        self.restarts, self.budget, self.next_index = 0, 3 * actors, 0
        for _ in range(actors):
            self.start()

    def start(self) -> None:
        from workers.actor import ClassifierActor

        i, self.next_index = self.next_index, self.next_index + 1
        actor = ClassifierActor.options(num_cpus=self.cpus, scheduling_strategy="SPREAD").remote(
            self.spec, self.job, self.cpus, f"{self.job.job_id}-actor-{i}"
        )
        self.pending_info[actor.info.remote()] = i  # answered once the actor is up, before its run() starts
        self.running[actor] = actor.run.remote()

    def collect_infos(self) -> None:
        import ray
        from ray.exceptions import RayActorError

        if not self.pending_info:
            return
        answered, _ = ray.wait(list(self.pending_info), num_returns=len(self.pending_info), timeout=0)
        for ref in answered:
            idx = self.pending_info.pop(ref)
            try:
                self.infos.append(ray.get(ref))
            except RayActorError as exc:
                self.log(f"actor {idx} did not start: {exc}")

    def reap(self, finished: Callable[[], bool], timeout: float = 0.5) -> None:
        """Wait a little for actors to return; replace the ones that died while work is left."""
        import ray
        from ray.exceptions import RayActorError

        refs = {ref: a for a, ref in self.running.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout) if refs else ([], [])
        for ref in ready:
            del self.running[refs[ref]]
            try:
                ray.get(ref)
            except RayActorError as exc:
                self.log(f"an actor died ({type(exc).__name__}); its units will be taken over")
                if not finished() and self.restarts < self.budget:
                    self.restarts += 1
                    self.start()

    def stop(self) -> None:
        """The actors return by themselves once the queue is drained; kill the stragglers."""
        import ray

        for a, ref in list(self.running.items()):
            try:
                ray.get(ref, timeout=10)
            except Exception:  # never started (e.g. no node left for it), or stuck: not needed any more
                ray.kill(a)


def _drive(
    queue: WorkQueue,
    spec: JobSpec,
    job: JobAddress,
    actors: int,
    cpus: int,
    rows_of: dict[str, int],
    on_progress: Callable[[int, int, int], None] | None,
    log: Callable[[str], object],
) -> list[dict[str, Any]]:
    """Run actors until every unit is done or dead; the actors' info (placement) is returned."""
    fleet = _Fleet(spec, job, actors, cpus, log)
    while True:
        progress = queue.progress()
        if on_progress:
            on_progress(sum(rows_of.get(u, 0) for u in queue.done_units()), progress.done, progress.dead)
        fleet.collect_infos()
        fleet.reap(lambda: queue.progress().finished)
        if not fleet.running:  # the last actors may have finished the job during the wait
            progress = queue.progress()
        if progress.finished:
            break
        if not fleet.running:
            raise JobError(
                f"every actor died and the restart budget is spent; {progress.done + progress.dead} "
                f"of {len(rows_of)} units finished; resume with --resume {job.job_id}"
            )
    fleet.stop()
    return fleet.infos
