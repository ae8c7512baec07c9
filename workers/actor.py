"""ClassifierActor: one per node; loads the encoder once and drains the job's work queue."""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

import ray

from workers.memory import peak_rss_mb


@dataclass(frozen=True)
class ActorSettings:
    """Everything an actor needs, plain data so it crosses process boundaries."""

    job_id: str
    redis_url: str
    prefix: str
    output: str
    text_column: str
    tenant_column: str | None
    fixed_tenant: str | None
    model: str | None
    prune: dict[str, Any] | None
    dtype: str
    token_budget: int
    cpus: int
    max_attempts: int = 3
    claim_idle_ms: int = 60_000


class ClassifierWorker:
    """The actor's logic, usable without Ray (tests, single-process runs).

    It runs one single-threaded encode stream per CPU: each stream takes, processes and acks its
    own units, sharing the encoder weights and the head cache. Torch ops release the GIL, and
    independent streams never wait on each other at the intra-op barriers that stall a
    multi-threaded encoder whenever another process takes one of its cores (README, Performance).
    """

    def __init__(self, settings: ActorSettings, name: str) -> None:
        import torch

        from prune import Encoder, EncoderOptions, PruneConfig
        from prune.cpu import resolve_dtype
        from workers.classify import HeadCache
        from workers.connection import connect
        from workers.queue import WorkQueue
        from workers.tenant_store import CentroidStore

        torch.set_num_threads(1)  # one thread per stream, settings.cpus streams
        self.settings = settings
        self.name = name
        prune = PruneConfig(**settings.prune) if settings.prune else None
        self.encoder = Encoder(
            settings.model,
            prune,
            EncoderOptions(dtype=resolve_dtype(settings.dtype), token_budget=settings.token_budget),
        )
        client = connect(settings.redis_url)
        self.queue = WorkQueue(client, settings.prefix, settings.job_id, settings.max_attempts, settings.claim_idle_ms)
        self.heads = HeadCache(CentroidStore(client, settings.prefix), self.encoder.fingerprint)
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
        }

    def process(self, unit_dict: dict[str, Any]) -> dict[str, Any]:
        from workers.classify import classify_table
        from workers.parquet_io import Unit, read_unit, write_part

        s = self.settings
        unit = Unit.from_dict(unit_dict)
        t0 = time.perf_counter()
        table = read_unit(unit)
        t1 = time.perf_counter()
        result = classify_table(table, self.encoder, self.heads, s.text_column, s.tenant_column, s.fixed_tenant)
        t2 = time.perf_counter()
        write_part(
            result.table,
            s.output,
            unit.id,
            {
                "job_id": s.job_id,
                "unit": unit.id,
                "source": unit.uri,
                "start_row": unit.start,
                "model_fingerprint": self.encoder.fingerprint,
                "prune": s.prune,
                "dtype": self.encoder.options.dtype,
                "tenant_versions": result.versions,
            },
        )
        t3 = time.perf_counter()
        return {
            "rows": unit.rows,
            "tokens": result.tokens,
            "tokens_kept": result.tokens_kept,
            "read_s": t1 - t0,
            "classify_s": t2 - t1,
            "encode_s": result.encode_seconds,
            "write_s": t3 - t2,
            "total_s": t3 - t0,
            "statuses": result.statuses,
            "versions": result.versions,
            "actor": self.name,
            "node": self.node,
            "host": self.host,
            "pid": os.getpid(),
            "rss_mb": peak_rss_mb(),
            "finished": time.time(),
        }

    def run(self, idle_poll_ms: int = 200) -> dict[str, Any]:
        """Until every unit of the job is done or dead-lettered, ``cpus`` streams take, process
        and ack units; an unexpected error in any stream is raised once all have stopped."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.settings.cpus, thread_name_prefix="encode") as pool:
            futures = [pool.submit(self._stream, idle_poll_ms) for _ in range(self.settings.cpus)]
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
            self.queue.ack(taken, stats)
            units += 1
            rows += stats["rows"]
            if self._metrics:
                for name, value in (("rows", stats["rows"]), ("units", 1), ("encode_seconds", stats["encode_s"])):
                    if value > 0:  # Ray counters refuse 0 (a unit whose rows all had nothing to encode)
                        self._metrics[name].inc(value)
        return units, rows


def _node_id() -> str:
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside Ray
        return socket.gethostname()


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
    def __init__(self, settings: dict[str, Any], name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.worker = ClassifierWorker(ActorSettings(**settings), name)

    def info(self) -> dict[str, Any]:
        return self.worker.info()

    def run(self) -> dict[str, Any]:
        return self.worker.run()


def settings_dict(settings: ActorSettings) -> dict[str, Any]:
    return asdict(settings)
