"""Fault points for the fault tests, armed only through the environment; unset, each is a no-op.

- ``JOBS_TEST_DIE_AT=POINT``: the process kills itself (SIGKILL, as a crash would) at the named
  point, e.g. ``create``: inside a job's creation, before it is committed to Redis.
- ``JOBS_TEST_SLOW_UNITS=SECONDS:EVERY``: one unit in EVERY (by id) takes SECONDS longer before
  its part file is written.
- ``JOBS_TEST_NO_SPACE_UNITS=EVERY``: one unit in EVERY fails as on a full disk.
"""

from __future__ import annotations

import errno
import os
import signal
import time

DIE_AT_ENV = "JOBS_TEST_DIE_AT"
SLOW_UNITS_ENV = "JOBS_TEST_SLOW_UNITS"
NO_SPACE_UNITS_ENV = "JOBS_TEST_NO_SPACE_UNITS"


def fault_point(name: str) -> None:
    """Die here, as a crash would, when the environment names this point."""
    if os.environ.get(DIE_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _picked(unit_id: str, every: str) -> bool:
    return int(unit_id[:8], 16) % int(every) == 0


def unit_faults(unit_id: str) -> None:
    """A slow unit, or a full disk, for the units the environment picks."""
    slow = os.environ.get(SLOW_UNITS_ENV)
    if slow and _picked(unit_id, slow.split(":")[1]):
        time.sleep(float(slow.split(":")[0]))
    full = os.environ.get(NO_SPACE_UNITS_ENV)
    if full and _picked(unit_id, full):
        raise OSError(errno.ENOSPC, "No space left on device (test hook)")
