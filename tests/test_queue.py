"""WorkQueue on a real Redis: at-least-once delivery, reclaiming, dead letters, idempotent create."""

from __future__ import annotations

import time

import pytest

from workers.connection import connect
from workers.queue import WorkQueue


def units(n: int) -> list[dict[str, object]]:
    return [{"id": f"u{i:03d}", "rows": i} for i in range(n)]


@pytest.fixture
def queue(redis_url: str, prefix: str) -> WorkQueue:
    return WorkQueue(connect(redis_url), prefix, "job1", max_attempts=2, claim_idle_ms=200)


def test_every_unit_taken_once_then_acked(queue: WorkQueue) -> None:
    assert queue.create(units(5), {"x": 1})
    assert not queue.create(units(5), {"x": 2})  # idempotent: a resume never enqueues twice
    assert queue.config() == {"x": 1}
    seen = []
    while (t := queue.take("c1", block_ms=50)) is not None:
        seen.append(t.unit["id"])
        queue.ack(t, {"rows": t.unit["rows"]})
    assert sorted(seen) == [f"u{i:03d}" for i in range(5)]
    p = queue.progress()
    assert (p.total, p.done, p.dead, p.finished) == (5, 5, 0, True)
    assert queue.done_stats()["u003"] == {"rows": 3}


def test_dead_consumer_units_are_reclaimed(queue: WorkQueue) -> None:
    queue.create(units(2), {})
    a = queue.take("dying", block_ms=50)
    assert a is not None  # "dying" never acks
    b = queue.take("alive", block_ms=50)
    assert b is not None and b.unit["id"] != a.unit["id"]
    queue.ack(b, {})
    assert queue.take("alive", block_ms=50) is None  # a is still within its idle time
    time.sleep(0.3)
    again = queue.take("alive", block_ms=50)
    assert again is not None and again.unit["id"] == a.unit["id"] and again.attempt == 2
    queue.ack(again, {})
    assert queue.progress().finished


def test_slow_consumer_reclaimed_unit_done_twice_keeps_the_first_record(queue: WorkQueue) -> None:
    queue.create(units(1), {})
    slow = queue.take("slow", block_ms=50)
    time.sleep(0.3)  # past claim_idle_ms: another consumer takes the unit over
    fast = queue.take("fast", block_ms=50)
    assert slow is not None and fast is not None and fast.unit["id"] == slow.unit["id"]
    queue.ack(slow, {"actor": "slow"})  # the slow one finishes first after all
    queue.ack(fast, {"actor": "fast"})
    assert queue.done_stats() == {"u000": {"actor": "slow"}}
    assert queue.progress().done == 1 and queue.take("c", block_ms=50) is None


def test_failures_retry_then_dead_letter(queue: WorkQueue) -> None:
    queue.create(units(1), {})
    first = queue.take("c", block_ms=50)
    queue.fail(first, "boom 1")
    second = queue.take("c", block_ms=50)
    assert second is not None and second.attempt == 2
    queue.fail(second, "boom 2")
    assert queue.take("c", block_ms=50) is None
    p = queue.progress()
    assert (p.done, p.dead, p.finished) == (0, 1, True)
    dead = queue.dead_letters()
    assert dead[0]["unit"] == "u000" and "boom 2" in dead[0]["error"]


def test_unit_that_kills_its_consumers_is_dead_lettered(queue: WorkQueue) -> None:
    queue.create(units(1), {})
    for _ in range(2):  # taken twice, never acked nor failed (the consumer died each time)
        assert queue.take("c", block_ms=50) is not None
        time.sleep(0.3)
    assert queue.take("c", block_ms=50) is None
    assert "died" in queue.dead_letters()[0]["error"]


def test_redelivery_of_a_done_unit_is_skipped(queue: WorkQueue) -> None:
    """A unit retried by one consumer (a fresh message) while another finished it: the copy is
    acknowledged and skipped, never run again."""
    queue.create(units(1), {})
    slow = queue.take("slow", block_ms=50)
    time.sleep(0.3)
    fast = queue.take("fast", block_ms=50)  # reclaimed while "slow" still works on it
    assert slow is not None and fast is not None
    queue.fail(slow, "slow consumer's error")  # re-queues a fresh copy of the unit
    queue.ack(fast, {"by": "fast"})
    assert queue.take("c", block_ms=50) is None  # the fresh copy is done already: skipped
    assert queue.progress().done == 1 and queue.done_stats() == {"u000": {"by": "fast"}}
    assert queue.client.xpending(queue.units, "classifiers")["pending"] == 0  # and acknowledged


def test_duplicate_unit_ids_rejected(queue: WorkQueue) -> None:
    with pytest.raises(ValueError):
        queue.create([{"id": "a"}, {"id": "a"}], {})
