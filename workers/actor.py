"""ClassifierActor: one per node; loads the encoder once and drains the job's work queue."""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import ray

from workers.connection import redact
from workers.fault_points import unit_faults
from workers.job_spec import JobAddress, JobSpec
from workers.memory import peak_rss_mb
from workers.unit import Unit, UnitStats

if TYPE_CHECKING:
    from prune import Encoder


class ClassifierWorker:
    """The actor's logic, usable without Ray (tests, single-process runs).

    It runs one single-threaded encode stream per CPU: each stream takes, processes and acks its
    own units, sharing the encoder weights and the head cache. Torch ops release the GIL, and
    independent streams never wait on each other at the intra-op barriers that stall a
    multi-threaded encoder whenever another process takes one of its cores (docs/performance.md).
    """

    def __init__(self, spec: JobSpec, job: JobAddress, cpus: int, name: str, encoder: Encoder | None = None) -> None:
        """``encoder``: an already loaded one (tests); by default the spec's model is loaded."""
        import torch

        from workers.classify import HeadCache
        from workers.connection import connect
        from workers.job_encoder import job_encoder
        from workers.queue import WorkQueue
        from workers.tenant_store import CentroidStore

        torch.set_num_threads(1)  # one thread per stream, `cpus` streams
        self.spec, self.job, self.cpus, self.name = spec, job, cpus, name
        self.encoder, self.dtype_why = (encoder, "given") if encoder else job_encoder(spec)
        client = connect(job.redis_url)
        self.queue = WorkQueue(client, job.prefix, job.job_id, spec.max_attempts, spec.claim_idle_ms)
        pinned = CentroidStore(client, job.prefix).pinned(job.job_id)  # the heads of the submit, not of now
        self.heads = HeadCache(pinned, self.encoder.fingerprint)
        self.node = _node_id()
        self.host = socket.gethostname()
        self._metrics = _metrics()

    def info(self) -> dict[str, Any]:
        return {
            "actor": self.name,
            "node": self.node,
            "host": self.host,
            "pid": os.getpid(),
            "fingerprint": self.encoder.fingerprint,
            "dtype": self.encoder.options.dtype,
            "dtype_why": self.dtype_why,
        }

    def process(self, unit_dict: dict[str, Any]) -> UnitStats:
        """Read, classify and write one unit; its part file is complete when this returns."""
        from workers.classify import classify_table
        from workers.parquet_io import read_unit, write_part

        unit = Unit.from_dict(unit_dict)
        t0 = time.perf_counter()
        table = read_unit(unit)
        t1 = time.perf_counter()
        result = classify_table(table, self.encoder, self.heads, self.spec.columns)
        unit_faults(unit.id)
        t2 = time.perf_counter()
        write_part(result.table, self.spec.output, unit.id, self._part_metadata(unit, result.versions))
        t3 = time.perf_counter()
        return UnitStats(
            rows=unit.rows,
            tokens=result.tokens,
            tokens_kept=result.tokens_kept,
            read_s=t1 - t0,
            encode_s=result.encode_seconds,
            head_s=(t2 - t1) - result.encode_seconds,
            write_s=t3 - t2,
            total_s=t3 - t0,
            statuses=result.statuses,
            versions=result.versions,
            actor=self.name,
            node=self.node,
            host=self.host,
            pid=os.getpid(),
            rss_mb=peak_rss_mb(),
            finished=time.time(),
        )

    def _part_metadata(self, unit: Unit, versions: dict[str, int]) -> dict[str, Any]:
        return {
            "job_id": self.job.job_id,
            "unit": unit.id,
            "source": redact(unit.uri),  # an object store URI may carry its keys
            "start_row": unit.start,
            "model_fingerprint": self.encoder.fingerprint,
            "prune": self.spec.prune.to_dict() if self.spec.prune else None,
            "dtype": self.encoder.options.dtype,
            "tenant_versions": versions,
        }

    def run(self, idle_poll_ms: int = 200) -> dict[str, Any]:
        """Until every unit of the job is done or dead-lettered, ``cpus`` streams take, process
        and ack units; an unexpected error in any stream is raised once all have stopped."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.cpus, thread_name_prefix="encode") as pool:
            futures = [pool.submit(self._stream, idle_poll_ms) for _ in range(self.cpus)]
            counts = [f.result() for f in futures]
        return {**self.info(), "units": sum(u for u, _ in counts), "rows": sum(r for _, r in counts)}

    def _stream(self, idle_poll_ms: int) -> tuple[int, int]:
        """One stream's loop; returns the (units, rows) it finished."""
        units = rows = 0
        while not self.queue.progress().finished:  # checked after each unit: no idle poll at the end
            taken = self.queue.take(self.name, block_ms=idle_poll_ms)
            if taken is None:
                continue
            try:
                stats = self.process(taken.unit)
            except Exception as exc:  # the unit failed: retried, then dead-lettered with its cause
                self.queue.fail(taken, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
                continue
            self.queue.ack(taken, asdict(stats))
            units += 1
            rows += stats.rows
            if self._metrics:
                for name, value in (("rows", stats.rows), ("units", 1), ("encode_seconds", stats.encode_s)):
                    if value > 0:  # Ray counters refuse 0 (a unit whose rows all had nothing to encode)
                        self._metrics[name].inc(value)
        return units, rows


def _node_id() -> str:
    if not ray.is_initialized():  # not inside Ray (tests, single-process runs): asking would start one
        return socket.gethostname()
    return ray.get_runtime_context().get_node_id()


def _metrics() -> dict[str, Any] | None:
    """Ray metrics (visible in the dashboard / Prometheus), when running inside Ray."""
    if not ray.is_initialized():
        return None
    from ray.util.metrics import Counter

    return {
        "rows": Counter("fewshot_rows_classified", "Rows classified"),
        "units": Counter("fewshot_units_done", "Work units done"),
        "encode_seconds": Counter("fewshot_encode_seconds", "Seconds spent encoding"),
    }


@ray.remote(max_restarts=0, max_task_retries=0)
class ClassifierActor:
    """A job's actor. One that cannot run the job's explicit dtype on its node (``Int8Unavailable``)
    takes no unit and says why in its info, where the driver stops the job: a failure in
    ``__init__`` would only kill it, and be retried, on every restart."""

    def __init__(self, spec: JobSpec, job: JobAddress, cpus: int, name: str) -> None:
        from prune.errors import Int8Unavailable

        self.refused: str | None = None
        try:
            self.worker: ClassifierWorker | None = ClassifierWorker(spec, job, cpus, name)
        except Int8Unavailable as exc:
            self.worker, self.refused = None, str(exc)
            self.name = name

    def info(self) -> dict[str, Any]:
        return self.worker.info() if self.worker else {"actor": self.name, "refused": self.refused}

    def run(self) -> dict[str, Any]:
        return self.worker.run() if self.worker else self.info()
