"""Peak resident memory of this process, measured honestly.

``getrusage(RUSAGE_SELF).ru_maxrss`` is preserved across ``execve``: a CLI started by a large
process (a benchmark, a notebook) would report its parent's peak as its own. Linux's ``VmHWM``
belongs to the current address space, so it starts afresh at exec; ``ru_maxrss`` is the fallback
elsewhere.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere
