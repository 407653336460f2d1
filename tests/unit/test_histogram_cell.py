"""The histogram cell both the request metrics and the application's histograms aggregate into."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st

from otel_gunicorn._worker.histogram_cell import HistogramCell

BOUNDS = (0.0, 1.0, 10.0)
values = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=30)


@given(values, values)
def test_a_cell_reports_what_was_recorded_across_intervals(first, second):
    """Counts by bucket (le), count, sum, min and max equal a direct computation, whatever the intervals."""
    cell = HistogramCell(len(BOUNDS) + 1)
    for value in first:
        cell.record(value, bisect_left(BOUNDS, value))
    cell.end_interval()
    for value in second:
        cell.record(value, bisect_left(BOUNDS, value))
    point = cell.value(BOUNDS)
    recorded = first + second
    expected_counts = tuple(sum(1 for v in recorded if bisect_left(BOUNDS, v) == b) for b in range(len(BOUNDS) + 1))
    assert (expected_counts, len(recorded)) == (point.counts, point.count)
    assert (sum(second) + sum(first)) == point.sum  # the SDK's order: this interval's sum added to the total before
    if recorded:
        assert (min(recorded), max(recorded)) == (point.min, point.max)


def test_a_value_on_a_boundary_falls_in_the_bucket_it_closes():
    """1.0 with boundaries (0, 1, 10) is counted in the bucket (0, 1]."""
    cell = HistogramCell(len(BOUNDS) + 1)
    cell.record(1.0, bisect_left(BOUNDS, 1.0))
    assert (0, 1, 0, 0) == cell.value(BOUNDS).counts
