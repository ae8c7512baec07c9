"""Report arithmetic on hand-made cases."""

from __future__ import annotations

import pytest

from jobs.report import busy_seconds


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0.0),
        ([(0.0, 2.0)], 2.0),
        ([(0.0, 2.0), (3.0, 4.0)], 3.0),  # an idle gap is not busy
        ([(0.0, 2.0), (1.0, 3.0)], 3.0),  # two streams overlapping: busy once
        ([(1.0, 3.0), (0.0, 5.0), (4.0, 6.0)], 6.0),  # nested and unsorted
    ],
)
def test_busy_seconds_is_the_union_of_unit_intervals(intervals: list[tuple[float, float]], expected: float) -> None:
    assert busy_seconds(intervals) == pytest.approx(expected)
