"""One histogram series as the worker aggregates it: bucket counts, sum, min and max.

Runs in a worker, under the lock of whoever owns the cell (:mod:`otel_gunicorn._worker.request_stats` for our request
metrics, :mod:`otel_gunicorn._worker.app_instruments` for the application's histograms); the cell itself takes no
lock. Both record on every request, so their hot paths update the fields inline rather than call :meth:`record`
(a Python call is a sixth of a whole measurement there); everything else goes through here.

The sum is kept in two parts, as the SDK keeps it: what was recorded since the last report, and the total before it
(:meth:`end_interval` adds the first to the second). Reported the same way, the same float additions give the same
result as the SDK would, to the last bit; a cell whose interval is never ended just sums.
"""

from __future__ import annotations

from otel_gunicorn._snapshot import HistogramValue

Number = int | float
_INF = float("inf")


class HistogramCell:
    """Bucket counts (one more than the boundaries), the sum in two parts, min and max of one series."""

    __slots__ = ("counts", "interval_sum", "total_sum", "min", "max")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.interval_sum: Number = 0
        self.total_sum: Number = 0
        self.min: Number = _INF
        self.max: Number = -_INF

    def record(self, value: Number, bucket: int) -> None:
        """Count ``value`` in ``bucket`` (the caller's ``bisect_left`` over the boundaries: a value equal to a
        boundary belongs to the bucket that boundary closes)."""
        self.counts[bucket] += 1
        self.interval_sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def end_interval(self) -> None:
        """At a report: the interval's sum joins the total (the SDK's order of addition)."""
        self.total_sum = self.interval_sum + self.total_sum
        self.interval_sum = 0

    @property
    def sum(self) -> Number:
        return self.interval_sum + self.total_sum

    def value(self, bounds: tuple[float, ...]) -> HistogramValue:
        """The cumulative point; its count is the sum of the buckets."""
        counts = tuple(self.counts)
        return HistogramValue(sum(counts), self.sum, bounds, counts, self.min, self.max)
