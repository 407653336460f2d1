"""otel_gunicorn's own request metrics, aggregated in plain Python and reported beside the SDK's collection.

Runs in a worker, on the request path. The SDK's synchronous instruments cost tens of microseconds per measurement
(attribute validation and hashing on every call), and a request takes three of them; with a hello-world application
that was a quarter of gunicorn's CPU per request. These instruments have a fixed shape — known attribute keys, fixed
bucket boundaries — so they are kept here as integers and bucket counts under one lock, and turned into the same
cumulative snapshot points the SDK's data becomes (see :meth:`RequestStats.snapshot`).

The same lock also keeps the request-seconds the worker has served, in-flight requests included
(:meth:`RequestStats.busy_seconds`), for ``gunicorn.worker.concurrency``: from the start and end times the request
core reads anyway, with two additions per request and no clock read of its own.
"""

from __future__ import annotations

import bisect
import threading

from otel_gunicorn import _instruments as inst
from otel_gunicorn._snapshot import AttrKey, HistogramValue, Snapshot


class _Histogram:
    __slots__ = ("bounds", "counts", "count", "sum", "min", "max")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def record(self, value: float) -> None:
        # bisect_left: a value equal to a boundary belongs to the bucket that boundary closes (le semantics)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def value(self) -> HistogramValue:
        return HistogramValue(self.count, self.sum, self.bounds, tuple(self.counts), self.min, self.max)


class RequestStats:
    """Active requests, request durations, queue times and invalid queue headers of one worker."""

    def __init__(self, bounds: tuple[float, ...] = inst.DURATION_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds
        self._active: dict[AttrKey, int] = {}
        self._durations: dict[AttrKey, _Histogram] = {}
        self._queue = _Histogram(bounds)
        self._invalid_headers = 0
        # request-seconds: finished requests' durations, plus (in flight × now - their start times) when read
        self._served_seconds = 0.0
        self._in_flight = 0
        self._start_sum = 0.0

    def started(self, key: AttrKey, at: float | None = None) -> None:
        """A request started at ``at`` (``time.perf_counter()``; ``None``: left out of :meth:`busy_seconds`)."""
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
            if at is not None:
                self._in_flight += 1
                self._start_sum += at

    def finished(
        self, active_key: AttrKey, duration_key: AttrKey, seconds: float, started_at: float | None = None
    ) -> None:
        """A request that :meth:`started` at ``started_at`` took ``seconds`` (pass the same ``at`` as then)."""
        with self._lock:
            if started_at is not None:
                self._in_flight -= 1
                self._start_sum -= started_at
                self._served_seconds += seconds
            self._active[active_key] -= 1
            histogram = self._durations.get(duration_key)
            if histogram is None:
                histogram = self._durations[duration_key] = _Histogram(self._bounds)
            histogram.record(seconds)

    def queued(self, seconds: float) -> None:
        with self._lock:
            self._queue.record(seconds)

    def invalid_header(self) -> None:
        with self._lock:
            self._invalid_headers += 1

    def busy_seconds(self, now: float) -> float:
        """Request-seconds served up to ``now`` (``time.perf_counter()``): the integral of requests in flight over
        time, so its growth over an interval, divided by the interval, is the average number in flight."""
        with self._lock:
            return self._served_seconds + self._in_flight * now - self._start_sum

    def snapshot(self) -> Snapshot:
        """Cumulative points of every request metric that has seen a request (called on the reporting thread)."""
        with self._lock:
            snapshot: Snapshot = {}
            if self._active:
                snapshot[inst.ACTIVE_REQUESTS.meta] = dict(self._active)
            if self._durations:
                snapshot[inst.REQUEST_DURATION.meta] = {k: h.value() for k, h in self._durations.items()}
            if self._queue.count:
                snapshot[inst.QUEUE_DURATION.meta] = {(): self._queue.value()}
            if self._invalid_headers:
                snapshot[inst.QUEUE_HEADER_INVALID.meta] = {(): self._invalid_headers}
            return snapshot
