"""What ``top`` computes between two scrapes: request rate, latency percentiles, worker exits since it started.

Runs in the operator's terminal; pure functions of :class:`~.model.Scrape` values and an elapsed time, no clock and
no I/O. The endpoint's counters and histograms are cumulative since the arbiter started, so the view differences
two refreshes; a value that went down means the arbiter restarted (a counter reset), and the new value is the
increase, as Prometheus' ``increase()`` treats it. Percentiles use Prometheus' ``histogram_quantile`` estimate
(linear interpolation inside the bucket), so ``top`` and a dashboard agree on the same buckets.

The endpoint's values move only when a worker reports (every ``OTEL_GUNICORN_METRICS_INTERVAL``, 5 s by default),
not at each refresh: differencing two refreshes 1 s apart reads 0 four times and then five seconds' worth of
requests over one. So rates and latencies are taken over a :class:`Window` of whole reports: from one refresh that
saw a new report to a later one, with at least one report per worker in between (the arbiter's accepted-reports
counter tells when reports arrive, even on an idle server). Each worker's counters then moved by whole report
intervals, and the rate is the true one however the refreshes and the reports interleave.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from otel_gunicorn._top.model import Histogram, RouteSeries, Scrape

QUANTILES = (0.5, 0.9, 0.99)
#: the routes table shows this many routes, those taking the largest share of the capacity (or the most requests)
ROUTES_SHOWN = 10
#: without the reports counter (an older endpoint), a window spans at least this many seconds of value changes
FALLBACK_SPAN = 5.0
#: CPU shares span at least this many seconds of the arbiter's rounds of /proc reads (two at the default interval):
#: each end of the window is a refresh that saw a new round, up to one refresh after it, so a longer span is a
#: smaller error
CPU_SPAN = 10.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """A scrape and the (monotonic) time it was taken."""

    scrape: Scrape
    at: float


@dataclasses.dataclass(frozen=True)
class Window:
    """Two refreshes that each saw a new report, with at least one report of every worker from one to the other."""

    start: Sample
    end: Sample

    @property
    def seconds(self) -> float:
        return self.end.at - self.start.at


@dataclasses.dataclass(frozen=True)
class Rates:
    """The derived numbers of one frame; ``None`` where they cannot be known (yet)."""

    #: requests per second over the window; None before a window of whole reports, or without request metrics
    request_rate: float | None
    #: quantile -> seconds; None without request metrics, a None value when the window had no request
    latency: Mapping[float, float | None] | None
    #: the latency is over everything since the server started (no window yet), not over the window
    cumulative: bool
    #: exit reason -> exits since ``top`` started; None when the endpoint has no exit counter
    exits_since_start: Mapping[str, float] | None
    #: seconds the rate and latency span; None before there is a window
    window: float | None = None
    #: seconds from the window's end (the latest report seen) to this frame
    window_age: float | None = None
    #: the routes table: over the window, or since the server started when there is no window yet
    routes: tuple[RouteRow, ...] = ()
    #: slot -> CPU seconds its workers used per second (1 = one core) over the latest rounds of /proc reads; a slot
    #: without a value there is unknown (no CPU series, or not two rounds yet)
    cpu: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RouteRow:
    """One route's line: its requests, rate, p99, failed share and share of the capacity; None where unknown."""

    route: str
    requests: float
    rate: float | None
    p99: float | None
    error_ratio: float | None
    share: float | None


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


def _progress(scrape: Scrape) -> float | None:
    """What moves with every report: the accepted-reports counter, else the request count."""
    if scrape.reports is not None:
        return scrape.reports
    return None if scrape.duration is None else scrape.duration.count


def _workers(scrape: Scrape) -> int:
    if scrape.slots:
        return len(scrape.slots)
    return max(1, int(scrape.worker_limit or 1))


def report_window(history: Sequence[Sample]) -> Window | None:
    """The latest window of whole reports in ``history`` (oldest first); None until there is one.

    Its end is the latest refresh that saw something new; its start the latest earlier such refresh that leaves at
    least one report per worker between the two (or, without the reports counter, ``FALLBACK_SPAN`` seconds).
    A counter that went down (the arbiter restarted) cuts the history there.
    """
    changes: list[Sample] = []
    for before, after in zip(history, history[1:]):
        old, new = _progress(before.scrape), _progress(after.scrape)
        if old is None or new is None:
            continue
        if new < old:
            changes = []  # a reset: nothing before it compares
        elif new > old:
            changes.append(after)
    if len(changes) < 2:
        return None
    end = changes[-1]
    needed, by_reports = _workers(end.scrape), end.scrape.reports is not None
    for start in reversed(changes[:-1]):
        reports = (end.scrape.reports or 0.0) - (start.scrape.reports or 0.0)
        if (reports >= needed) if by_reports else (end.at - start.at >= FALLBACK_SPAN):
            return Window(start, end)
    return None


def compare(history: Sequence[Sample], first: Scrape) -> Rates:
    """The frame of the latest sample in ``history`` (oldest first): rates over its window, exits since ``first``."""
    current = history[-1]
    window = report_window(history)
    seen = None
    if window is not None and window.start.scrape.duration is not None and window.end.scrape.duration is not None:
        seen = increase(window.start.scrape.duration, window.end.scrape.duration)
    rate = None if seen is None or window is None else seen.count / window.seconds
    shown = seen if seen is not None else current.scrape.duration
    latency = None if shown is None else {q: quantile(q, shown) for q in QUANTILES}
    return Rates(
        request_rate=rate,
        latency=latency,
        cumulative=seen is None and shown is not None,
        exits_since_start=exits_since(first.exits, current.scrape.exits),
        window=None if window is None else window.seconds,
        window_age=None if window is None else current.at - window.end.at,
        routes=route_rows(current.scrape, window),
        cpu=cpu_shares(read_window(history)),
    )


def read_window(history: Sequence[Sample]) -> Window | None:
    """Two refreshes that each saw a new round of the arbiter's ``/proc`` reads, at least ``CPU_SPAN`` apart (or the
    farthest apart there are); None before two such refreshes, or without the reads counter. A counter that went
    down (the arbiter restarted) cuts the history there.

    The arbiter reads every worker's CPU time once per report interval, so the CPU counters move in steps, between
    refreshes: a share taken from one refresh to the next would read 0 and then several seconds' worth over one.
    """
    changes: list[Sample] = []
    for before, after in zip(history, history[1:]):
        old, new = before.scrape.process_reads, after.scrape.process_reads
        if old is None or new is None:
            continue
        if new < old:
            changes = []
        elif new > old:
            changes.append(after)
    if len(changes) < 2:
        return None
    end = changes[-1]
    start = next((c for c in reversed(changes[:-1]) if end.at - c.at >= CPU_SPAN), changes[0])
    return Window(start, end)


def cpu_shares(window: Window | None) -> dict[str, float]:
    """Per slot, the CPU seconds per second its workers used over ``window`` (a slot's counter keeps a replaced
    worker's time, so a replacement in the window is no reset); slots without CPU time at both ends are left out."""
    if window is None or window.seconds <= 0:
        return {}
    before = {row.slot: row.cpu_seconds for row in window.start.scrape.slots}
    shares = {}
    for row in window.end.scrape.slots:
        start = before.get(row.slot)
        if start is not None and row.cpu_seconds is not None:
            shares[row.slot] = counter_increase(start, row.cpu_seconds) / window.seconds
    return shares


def _route_increase(before: RouteSeries | None, after: RouteSeries) -> RouteSeries:
    if before is None:
        return after
    duration = increase(before.duration, after.duration)
    if duration is after.duration:  # a reset: all of ``after`` is new
        return after
    return RouteSeries(duration, after.seconds - before.seconds, counter_increase(before.errors, after.errors))


def route_rows(current: Scrape, window: Window | None) -> tuple[RouteRow, ...]:
    """The ``ROUTES_SHOWN`` routes taking the most of the capacity over ``window`` (the most requests without one:
    then totals since the server started, with no rate and no share); a route with no request there is left out."""
    scrape = current if window is None else window.end.scrape
    rows = []
    for route, after in scrape.routes.items():
        seen = after if window is None else _route_increase(window.start.scrape.routes.get(route), after)
        count = seen.duration.count
        if not count:
            continue  # no request of that route in the window: the table lists the routes that are served
        rate = None if window is None else count / window.seconds
        busy = None if window is None else seen.seconds / window.seconds
        share = None if busy is None or not scrape.capacity else busy / scrape.capacity
        errors = seen.errors / count if count else None
        rows.append(RouteRow(route, count, rate, quantile(0.99, seen.duration), errors, share))
    rows.sort(key=lambda row: (-(row.share or 0.0), -row.requests, row.route))
    return tuple(rows[:ROUTES_SHOWN])


def exits_since(first: Mapping[str, float] | None, current: Mapping[str, float] | None) -> dict[str, float] | None:
    """Exits per reason since the ``first`` scrape (a reason it lacked counts from 0)."""
    if current is None:
        return None
    baseline = first or {}
    return {reason: counter_increase(baseline.get(reason, 0.0), value) for reason, value in current.items()}
