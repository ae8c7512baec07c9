"""The job's actors while it runs: started one per node, watched, replaced when one dies (within
a budget), until every unit is done or dead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.errors import JobError
from prune.errors import Int8Unavailable
from workers.job_spec import JobAddress, JobSpec
from workers.queue import WorkQueue


class Fleet:
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
        actor = ClassifierActor.options(  # type: ignore[attr-defined]  # @ray.remote makes it an ActorClass, untyped
            num_cpus=self.cpus, scheduling_strategy="SPREAD"
        ).remote(self.spec, self.job, self.cpus, f"{self.job.job_id}-actor-{i}")
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
                info = ray.get(ref)
            except RayActorError as exc:
                self.log(f"actor {idx} did not start: {exc}")
                continue
            if info.get("refused"):  # it cannot run the job's dtype on its node: a restart would not either
                self.stop()
                raise Int8Unavailable(
                    f"{info['refused']}. Job {self.job.job_id} stopped; resume it once fixed with --resume "
                    f"{self.job.job_id}, or clear it with `jobs forget {self.job.job_id} --force`"
                )
            self.infos.append(info)

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


def drive(
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
    fleet = Fleet(spec, job, actors, cpus, log)
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
