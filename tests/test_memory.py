"""Peak RSS is the process's own, not inherited through fork + exec from a large parent."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO
from workers.memory import peak_rss_mb


def test_peak_rss_is_not_inherited_from_a_large_parent() -> None:
    ballast = bytearray(400 * 2**20)  # touch 400 MB in this (parent) process
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    assert peak_rss_mb() > 400
    code = "from workers.memory import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
    del ballast
    assert 1 < child < 200  # a small interpreter: its own peak only
