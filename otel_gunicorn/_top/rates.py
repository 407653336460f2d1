"""What ``top`` computes between two scrapes: request rate, latency percentiles, worker exits since it started.

Runs in the operator's terminal; pure functions of :class:`~.model.Scrape` values and an elapsed time, no clock and
no I/O. The endpoint's counters and histograms are cumulative since the arbiter started, so the view differences
two refreshes; a value that went down means the arbiter restarted (a counter reset), and the new value is the
increase, as Prometheus' ``increase()`` treats it. Percentiles use Prometheus' ``histogram_quantile`` estimate
(linear interpolation inside the bucket), so ``top`` and a dashboard agree on the same buckets.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from otel_gunicorn._top.model import Histogram, Scrape

QUANTILES = (0.5, 0.9, 0.99)


@dataclasses.dataclass(frozen=True)
class Rates:
    """The derived numbers of one frame; ``None`` where they cannot be known (yet)."""

    #: requests per second since the previous refresh; None on the first frame or without request metrics
    request_rate: float | None
    #: quantile -> seconds; None without request metrics, a None value when the window had no request
    latency: Mapping[float, float | None] | None
    #: the latency is over everything since the server started (first frame), not the last interval
    cumulative: bool
    #: exit reason -> exits since ``top`` started; None when the endpoint has no exit counter
    exits_since_start: Mapping[str, float] | None


def quantile(q: float, histogram: Histogram) -> float | None:
    """Prometheus' ``histogram_quantile(q, ...)`` of cumulative buckets; None with no observation.

    The rank falls in the first bucket whose cumulative count reaches it; the estimate interpolates linearly between
    that bucket's bounds (the first bucket's lower bound is 0). A rank in the ``+Inf`` bucket gives the highest
    finite bound, the most the buckets can say.
    """
    bounds, counts = histogram.bounds, _monotonic(histogram.cumulative)
    if not bounds or counts[-1] <= 0 or not math.isinf(bounds[-1]):
        return None
    rank = q * counts[-1]
    index = next(i for i, count in enumerate(counts) if count >= rank)
    upper = bounds[index]
    if math.isinf(upper):
        return bounds[-2] if len(bounds) > 1 else None
    below = counts[index - 1] if index else 0.0
    lower = bounds[index - 1] if index else min(0.0, upper)
    inside = counts[index] - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside


def _monotonic(counts: tuple[float, ...]) -> list[float]:
    # buckets summed from a scrape taken while a worker reported can be off by one; Prometheus smooths the same way
    smoothed: list[float] = []
    for count in counts:
        smoothed.append(max(count, smoothed[-1]) if smoothed else count)
    return smoothed


def increase(previous: Histogram, current: Histogram) -> Histogram:
    """The observations between two scrapes; all of ``current`` after a reset or a change of buckets."""
    if previous.bounds != current.bounds or any(c < p for c, p in zip(current.cumulative, previous.cumulative)):
        return current
    return Histogram(current.bounds, tuple(c - p for c, p in zip(current.cumulative, previous.cumulative)))


def counter_increase(previous: float, current: float) -> float:
    """``current - previous``, or ``current`` when the counter was reset in between."""
    return current if current < previous else current - previous


def compare(current: Scrape, previous: Scrape | None, elapsed: float, first: Scrape) -> Rates:
    """The frame's derived numbers: against ``previous`` (None on the first frame) and against ``first``."""
    window = None
    if previous is not None and previous.duration is not None and current.duration is not None:
        window = increase(previous.duration, current.duration)
    rate = None if window is None or elapsed <= 0 else window.count / elapsed
    shown = window if window is not None else current.duration
    latency = None if shown is None else {q: quantile(q, shown) for q in QUANTILES}
    return Rates(
        request_rate=rate,
        latency=latency,
        cumulative=window is None and shown is not None,
        exits_since_start=exits_since(first.exits, current.exits),
    )


def exits_since(first: Mapping[str, float] | None, current: Mapping[str, float] | None) -> dict[str, float] | None:
    """Exits per reason since the ``first`` scrape (a reason it lacked counts from 0)."""
    if current is None:
        return None
    baseline = first or {}
    return {reason: counter_increase(baseline.get(reason, 0.0), value) for reason, value in current.items()}
