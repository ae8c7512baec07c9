"""WorkQueue: a job's work units on a Redis stream with one consumer group.

Keys, under the store's prefix, for job J:

- ``{prefix}:job:J:units``     stream of units (field ``unit``: JSON with at least ``id``)
- ``{prefix}:job:J:done``      hash unit id -> JSON stats of its first successful run
- ``{prefix}:job:J:dead``      hash unit id -> JSON {payload, error}: units that failed ``max_attempts`` times
- ``{prefix}:job:J:attempts``  hash unit id -> times it was taken
- ``{prefix}:job:J:errors``    hash unit id -> last error
- ``{prefix}:job:J``           hash: total units, enqueued flag, created, config JSON

Delivery is at least once: a consumer takes a unit with XREADGROUP, writes its output
idempotently, then ``ack`` records its stats and XACKs. Units left pending by a dead consumer
are taken over with XAUTOCLAIM once idle for ``claim_idle_ms``. A unit taken more than
``max_attempts`` times (it failed, or its consumers kept dying) is dead-lettered instead of
running again.

Exactly once by unit identity: a unit is in ``done`` or in ``dead``, never both, and the job is
finished when every unit is in one of them. The transitions are Lua scripts, atomic in Redis:
dead-lettering a unit that is done only acknowledges its message; an ack is only sent once the
unit's part file is complete, so a late ack from a consumer that lost the unit to a takeover
wins over its dead-lettering (the unit moves from ``dead`` to ``done``); a retry of a unit that
is done is dropped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from workers.connection import text
from workers.fault_points import fault_point

GROUP = "classifiers"

# KEYS: done, dead, units. ARGV: unit id, message id, stats JSON.
_ACK = """
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('XACK', KEYS[3], 'classifiers', ARGV[2])
return 1
"""
# KEYS: done, dead, units. ARGV: unit id, message id, dead-letter JSON. 1 if dead-lettered.
_DEAD_LETTER = """
redis.call('XACK', KEYS[3], 'classifiers', ARGV[2])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
# KEYS: done, units. ARGV: unit id, message id, unit JSON. 1 if re-queued.
_RETRY = """
redis.call('XACK', KEYS[2], 'classifiers', ARGV[2])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('XADD', KEYS[2], '*', 'unit', ARGV[3])
return 1
"""
# KEYS: done, dead, attempts, units. ARGV: unit id. 1 if the dead unit was queued again.
_REQUEUE = """
local letter = redis.call('HGET', KEYS[2], ARGV[1])
if not letter then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'unit', cjson.decode(letter)['payload'])
return 1
"""


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
        self._ack = client.register_script(_ACK)
        self._dead_letter_script = client.register_script(_DEAD_LETTER)
        self._retry = client.register_script(_RETRY)
        self._requeue = client.register_script(_REQUEUE)

    # --- driver side -------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.client.exists(self.meta))

    def create(self, units: list[dict[str, Any]], config: dict[str, Any]) -> bool:
        """Enqueue the units and store the config in one transaction: a job exists whole or not at
        all, even when its driver dies while creating it. False (nothing changed) if it exists."""
        ids = [u["id"] for u in units]
        if len(set(ids)) != len(ids):
            raise ValueError("unit ids must be unique")
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.meta, self.units)
                if pipe.exists(self.meta, self.units):
                    return False
                pipe.multi()
                pipe.xgroup_create(self.units, GROUP, id="0", mkstream=True)
                for u in units:
                    pipe.xadd(self.units, {"unit": json.dumps(u)})
                meta: dict[FieldT, EncodableT] = {
                    "total": len(units),
                    "config": json.dumps(config),
                    "created": time.time(),
                    "enqueued": 1,
                }
                pipe.hset(self.meta, mapping=meta)
                fault_point("create")
                pipe.execute()
            except redis.WatchError:  # another driver created it meanwhile
                return False
        return True

    def forget(self) -> None:
        """Delete every key of the job's queue."""
        self.client.delete(self.meta, self.units, self.dead, self.done, self.attempts, self.errors)

    def config(self) -> dict[str, Any]:
        raw = self.client.hget(self.meta, "config")
        if raw is None:
            raise KeyError(f"job {self.job_id!r} does not exist (or was not fully created)")
        return json.loads(raw)

    def progress(self) -> Progress:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hget(self.meta, "total")
            pipe.hlen(self.done)
            pipe.hlen(self.dead)
            total, done, dead = pipe.execute()
        return Progress(int(total or 0), int(done), int(dead))

    def done_stats(self) -> dict[str, dict[str, Any]]:
        return {text(k): json.loads(v) for k, v in self.client.hgetall(self.done).items()}

    def done_units(self) -> list[str]:
        return [text(k) for k in self.client.hkeys(self.done)]

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead units (never done ones): unit id, its payload (JSON) and its last error."""
        letters = self.client.hgetall(self.dead)
        return [{"unit": text(k), **json.loads(v)} for k, v in sorted(letters.items())]

    def requeue_dead(self) -> list[str]:
        """Give every dead unit a fresh set of attempts (a resume after a transient failure such
        as a full disk or a lost node); returns their ids."""
        keys = [self.done, self.dead, self.attempts, self.units]
        return [text(u) for u in self.client.hkeys(self.dead) if self._requeue(keys=keys, args=[u])]

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
                error = text(self.client.hget(self.errors, unit["id"]) or b"its consumers died while running it")
                self._dead_letter(message_id, unit, f"failed {attempt - 1} times; last error: {error}")
                continue
            return Taken(message_id, unit, attempt)

    def ack(self, taken: Taken, stats: dict[str, Any]) -> None:
        """The unit's part file is complete: record its stats and acknowledge it, atomically.
        When a slow consumer's unit was reclaimed and done twice, the first completion keeps the
        record; a unit dead-lettered meanwhile is done after all."""
        self._ack(keys=[self.done, self.dead, self.units], args=[taken.unit["id"], taken.message_id, json.dumps(stats)])

    def fail(self, taken: Taken, error: str) -> None:
        """The unit failed: retry it (a fresh message) or, past max_attempts, dead-letter it."""
        self.client.hset(self.errors, taken.unit["id"], error[:2000])
        if taken.attempt >= self.max_attempts:
            self._dead_letter(taken.message_id, taken.unit, f"failed {taken.attempt} times; last error: {error}")
            return
        self._retry(keys=[self.done, self.units], args=[taken.unit["id"], taken.message_id, json.dumps(taken.unit)])

    def _dead_letter(self, message_id: str, unit: dict[str, Any], error: str) -> None:
        letter = json.dumps({"payload": json.dumps(unit), "error": error[:4000]})
        self._dead_letter_script(keys=[self.done, self.dead, self.units], args=[unit["id"], message_id, letter])

    def _read(self, consumer: str, block_ms: int) -> tuple[str, dict[str, Any]] | None:
        # redis-py types stream replies as a union of every reply shape; this one is
        # [[stream, [(message_id, fields)]]]
        got: Any = self.client.xreadgroup(GROUP, consumer, {self.units: ">"}, count=1, block=block_ms)
        if not got:
            return None
        message_id, fields = got[0][1][0]
        return text(message_id), json.loads(fields[b"unit"])

    def _claim(self, consumer: str) -> tuple[str, dict[str, Any]] | None:
        _, messages, *_ = self.client.xautoclaim(self.units, GROUP, consumer, self.claim_idle_ms, "0-0", count=1)
        for message_id, fields in messages:
            if fields:  # a message deleted from the stream comes back empty
                return text(message_id), json.loads(fields[b"unit"])
        return None
