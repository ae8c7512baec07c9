"""WorkQueue: a job's work units on a Redis stream with one consumer group.

Keys, under the store's prefix, for job J:

- ``{prefix}:job:J:units``     stream of units (field ``unit``: JSON with at least ``id``)
- ``{prefix}:job:J:dead``      dead-letter stream: units that failed ``max_attempts`` times, with the error
- ``{prefix}:job:J:done``      hash unit id -> JSON stats of its (last) successful run
- ``{prefix}:job:J:attempts``  hash unit id -> times it was taken
- ``{prefix}:job:J:errors``    hash unit id -> last error
- ``{prefix}:job:J``           hash: total units, enqueued flag, created, config JSON

Delivery is at least once: a consumer takes a unit with XREADGROUP, writes its output
idempotently, then ``ack`` records its stats and XACKs in one transaction. Units left pending
by a dead consumer are taken over with XAUTOCLAIM once idle for ``claim_idle_ms``. A unit
taken more than ``max_attempts`` times (it failed, or its consumers kept dying) goes to the
dead-letter stream instead of running again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

GROUP = "classifiers"


@dataclass(frozen=True)
class Taken:
    message_id: str
    unit: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    dead: int

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done + self.dead >= self.total


class WorkQueue:
    def __init__(
        self, client: redis.Redis, prefix: str, job_id: str, max_attempts: int = 3, claim_idle_ms: int = 30_000
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = client
        self.job_id = job_id
        self.max_attempts = max_attempts
        self.claim_idle_ms = claim_idle_ms
        base = f"{prefix}:job:{job_id}"
        self.meta, self.units, self.dead = base, f"{base}:units", f"{base}:dead"
        self.done, self.attempts, self.errors = f"{base}:done", f"{base}:attempts", f"{base}:errors"

    # --- driver side -------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.client.exists(self.meta))

    def create(self, units: list[dict[str, Any]], config: dict[str, Any]) -> bool:
        """Enqueue the units once; False (and nothing enqueued) if this job already has them."""
        ids = [u["id"] for u in units]
        if len(set(ids)) != len(ids):
            raise ValueError("unit ids must be unique")
        if not self.client.hsetnx(self.meta, "total", len(units)):
            return False
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xgroup_create(self.units, GROUP, id="0", mkstream=True)
            for u in units:
                pipe.xadd(self.units, {"unit": json.dumps(u)})
            pipe.hset(self.meta, mapping={"config": json.dumps(config), "created": time.time(), "enqueued": 1})
            pipe.execute()
        return True

    def config(self) -> dict[str, Any]:
        raw = self.client.hget(self.meta, "config")
        if raw is None:
            raise KeyError(f"job {self.job_id!r} does not exist (or was not fully created)")
        return json.loads(raw)

    def progress(self) -> Progress:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.meta, "total")
            pipe.hlen(self.done)
            pipe.xlen(self.dead)
            total, done, dead = pipe.execute()
        return Progress(int(total or 0), int(done), int(dead))

    def done_stats(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in self.client.hgetall(self.done).items()}

    def done_units(self) -> list[str]:
        return [k.decode() for k in self.client.hkeys(self.done)]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in self.client.xrange(self.dead)]

    def is_done(self, unit_id: str) -> bool:
        return bool(self.client.hexists(self.done, unit_id))

    # --- consumer side -----------------------------------------------------------------------
    def take(self, consumer: str, block_ms: int = 1000) -> Taken | None:
        """The next unit for this consumer: a stale one from a dead consumer first, else a new one."""
        while True:
            message = self._claim(consumer) or self._read(consumer, block_ms)
            if message is None:
                return None
            message_id, unit = message
            if self.is_done(unit["id"]):  # a redelivery of a unit whose output is already durable
                self.client.xack(self.units, GROUP, message_id)
                continue
            attempt = int(self.client.hincrby(self.attempts, unit["id"], 1))
            if attempt > self.max_attempts:
                error = (self.client.hget(self.errors, unit["id"]) or b"its consumers died while running it").decode()
                self._dead_letter(message_id, unit, f"failed {attempt - 1} times; last error: {error}")
                continue
            return Taken(message_id, unit, attempt)

    def ack(self, taken: Taken, stats: dict[str, Any]) -> None:
        """The unit's output is durable: record its stats and acknowledge it, atomically. When a
        slow consumer's unit was reclaimed and done twice, the first completion keeps the record."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.done, taken.unit["id"], json.dumps(stats))
            pipe.xack(self.units, GROUP, taken.message_id)
            pipe.execute()

    def fail(self, taken: Taken, error: str) -> None:
        """The unit failed: retry it (a fresh message) or, past max_attempts, dead-letter it."""
        self.client.hset(self.errors, taken.unit["id"], error[:2000])
        if taken.attempt >= self.max_attempts:
            self._dead_letter(taken.message_id, taken.unit, f"failed {taken.attempt} times; last error: {error}")
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.units, {"unit": json.dumps(taken.unit)})
            pipe.xack(self.units, GROUP, taken.message_id)
            pipe.execute()

    def _dead_letter(self, message_id: str, unit: dict[str, Any], error: str) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead, {"unit": unit["id"], "payload": json.dumps(unit), "error": error[:4000]})
            pipe.xack(self.units, GROUP, message_id)
            pipe.execute()

    def _read(self, consumer: str, block_ms: int) -> tuple[str, dict[str, Any]] | None:
        got = self.client.xreadgroup(GROUP, consumer, {self.units: ">"}, count=1, block=block_ms)
        if not got:
            return None
        message_id, fields = got[0][1][0]
        return message_id.decode(), json.loads(fields[b"unit"])

    def _claim(self, consumer: str) -> tuple[str, dict[str, Any]] | None:
        _, messages, *_ = self.client.xautoclaim(self.units, GROUP, consumer, self.claim_idle_ms, "0-0", count=1)
        for message_id, fields in messages:
            if fields:  # a message deleted from the stream comes back empty
                return message_id.decode(), json.loads(fields[b"unit"])
        return None
