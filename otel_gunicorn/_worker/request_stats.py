"""otel_gunicorn's own request metrics, aggregated in plain Python and reported beside the SDK's collection.

Runs in a worker, on the request path. The SDK's synchronous instruments cost tens of microseconds per measurement
(attribute validation and hashing on every call), and a request takes three of them; with a hello-world application
that was a quarter of gunicorn's CPU per request. These instruments have a fixed shape — known attribute keys, fixed
bucket boundaries — so they are kept here as integers and bucket counts under one lock, and turned into the same
cumulative snapshot points the SDK's data becomes (see :meth:`RequestStats.snapshot`).

The same lock also keeps the request-seconds the worker has served, in-flight requests included
(:meth:`RequestStats.busy_seconds`), for ``gunicorn.worker.concurrency``: from the start and end times the request
core reads anyway, with one addition per request and no clock read of its own.

What a request pays is kept to a dict store when it starts (:attr:`RequestStats.in_flight`, no lock) and one lock
round trip when it ends (:meth:`RequestStats.closed`); counting the requests in flight by key, a histogram's total
count and the copies for the report are left to :meth:`RequestStats.snapshot`, on the reporting thread once per
report interval. (The lock is taken with ``acquire``/``release`` rather than ``with``: half the cost, measured.)

Exemplars of ``http.server.request.duration`` (``OTEL_METRICS_EXEMPLAR_FILTER``, docs/exemplars.md): the newest
request of each bucket of a series is kept as the request's duration, its end on the ``perf_counter`` clock and its
span's context — taken from the span the request core holds, no context lookup; with tracing off, the caller's
non-recording span of a request that brought a ``traceparent`` — and becomes an
:class:`~otel_gunicorn._snapshot.Exemplar` only at the report, which hands each over once. With ``always_off``
nothing is read; with ``trace_based`` (the default) a request without a span (tracing off, no ``traceparent``) or
with an unsampled one costs one test; ``always_on`` keeps spanless requests too, without ids, as the SDK does.

``gunicorn.requests.slow``: :meth:`RequestStats.closed` counts every request that took at least
``OTEL_GUNICORN_SLOW_REQUEST_SECONDS`` with its duration's attributes when it ends (one comparison per request,
against infinity when the threshold is unset) — all of them, also those that began and ended between two of the
slow-request check's ticks (:mod:`otel_gunicorn._worker.request_watch`) and so never had a line while running.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from typing import Any

from otel_gunicorn import _instruments as inst
from otel_gunicorn._snapshot import AttrKey, Exemplar, Snapshot, Value, with_exemplars
from otel_gunicorn._worker.histogram_cell import HistogramCell

#: the values of ``OTEL_METRICS_EXEMPLAR_FILTER`` a :class:`RequestStats` understands (the configuration's)
TRACE_BASED, ALWAYS_ON, ALWAYS_OFF = "trace_based", "always_on", "always_off"

#: a kept exemplar until the report: (seconds, perf_counter at the request's end, span context or None)
_Sample = tuple[float, float, Any]


class _Histogram(HistogramCell):
    """A :class:`HistogramCell` with its boundaries and the exemplars sampled since the last report."""

    __slots__ = ("bounds", "samples")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        super().__init__(len(bounds) + 1)
        self.bounds = bounds
        #: exemplars kept since the last report, by bucket: the newest of each
        self.samples: dict[int, _Sample] = {}

    def record_value(self, value: float) -> None:
        self.record(value, bisect_left(self.bounds, value))

    def take_exemplars(self, wall_ns: int, perf: float) -> tuple[Exemplar, ...]:
        """The exemplars kept since the last call, in bucket order, timed on the wall clock (``wall_ns`` and
        ``perf`` read together), and forget them."""
        exemplars = []
        for bucket in sorted(self.samples):
            seconds, ended, context = self.samples[bucket]
            at = wall_ns - round((perf - ended) * 1e9)
            if context is not None and context.is_valid:
                exemplars.append(Exemplar(seconds, at, context.trace_id, context.span_id))
            else:
                exemplars.append(Exemplar(seconds, at, 0, 0))
        self.samples = {}
        return tuple(exemplars)


class RequestStats:
    """Active requests, request durations, queue times and invalid queue headers of one worker.

    Requests are counted in flight in one of two ways. The request core registers each request in :attr:`in_flight`
    (a plain dict store: no lock, no call) and ends it with :meth:`closed`, which takes it out under the lock; the
    snapshot counts the registry. :meth:`started` / :meth:`finished` count a request without registering it, under
    the lock both times.
    """

    def __init__(self, bounds: tuple[float, ...] = inst.DURATION_BUCKETS, exemplar_filter: str = TRACE_BASED) -> None:
        """``exemplar_filter``: :data:`TRACE_BASED`, :data:`ALWAYS_ON` or :data:`ALWAYS_OFF` (the worker passes the
        arbiter's validated ``OTEL_METRICS_EXEMPLAR_FILTER``)."""
        self._lock = threading.Lock()
        self._bounds = bounds
        #: whether any request may become an exemplar; and whether every one may (not only those with a sampled span)
        self._sampling = exemplar_filter != ALWAYS_OFF
        self._every = exemplar_filter == ALWAYS_ON
        #: requests in flight, by the id of their request object: (perf_counter at start, active-requests key, method,
        #: span or None, ...) tuples (``requests.InFlight``). Added to without the lock (a dict store is atomic),
        #: removed only by :meth:`closed`.
        self.in_flight: dict[int, tuple[Any, ...]] = {}
        # in flight through started()/finished(), by key; and every key ever in flight (with 0), so a series stays
        self._active: dict[AttrKey, int] = {}
        self._durations: dict[AttrKey, _Histogram] = {}
        self._queue = _Histogram(bounds)
        self._invalid_headers = 0
        # request-seconds: finished requests' durations, plus (in flight × now - their start times) when read
        self._served_seconds = 0.0
        self._in_flight = 0
        self._start_sum = 0.0
        #: whether an application wrapper feeds these statistics (set by ``app_boundary.install``): the only way
        #: requests reach them in a worker class that calls no request hooks
        self.wrapped = False
        #: the request core's bound on ``http.route`` values (set by it), whose folded requests are reported here
        self.route_bound: Any = None
        #: ``OTEL_GUNICORN_SLOW_REQUEST_SECONDS`` (set by the worker's runtime; infinity: unset): a request that took
        #: at least this long counts in ``gunicorn.requests.slow`` when it ends, with its duration's attributes
        self.slow_after = math.inf
        self._slow_counts: dict[AttrKey, int] = {}

    def known_key(self, key: AttrKey) -> None:
        """``key`` will be used by requests registered in :attr:`in_flight`: report it from now on, 0 when idle."""
        with self._lock:
            self._active.setdefault(key, 0)

    def closed(self, ident: int, duration_key: AttrKey, seconds: float) -> bool:
        """The request registered in :attr:`in_flight` under ``ident`` took ``seconds``: take it out, record its
        duration. False (nothing recorded) when it is not there: ended already."""
        lock = self._lock
        lock.acquire()
        try:
            entry = self.in_flight.pop(ident, None)
            if entry is None:
                return False
            self._served_seconds += seconds
            if seconds >= self.slow_after:
                self._slow_counts[duration_key] = self._slow_counts.get(duration_key, 0) + 1
            # HistogramCell.record(), inlined (the bucket is needed for the exemplar too): this runs on every request
            histogram = self._durations.get(duration_key)
            if histogram is None:
                histogram = self._durations[duration_key] = _Histogram(self._bounds)
            bucket = bisect_left(histogram.bounds, seconds)
            histogram.counts[bucket] += 1
            histogram.interval_sum += seconds
            if seconds < histogram.min:
                histogram.min = seconds
            if seconds > histogram.max:
                histogram.max = seconds
            if self._sampling:
                span = entry[3]  # the request's span (requests.InFlight), None without tracing
                if span is not None:
                    context = span.get_span_context()
                    # SpanContext is a tuple whose item 3 is its trace flags (its declared layout): a third of the
                    # cost of the .trace_flags property. Bit 0 is W3C "sampled": the trace-based filter.
                    if context[3] & 1 or self._every:
                        histogram.samples[bucket] = (seconds, entry[0] + seconds, context)
                elif self._every:
                    histogram.samples[bucket] = (seconds, entry[0] + seconds, None)
            return True
        finally:
            lock.release()

    def started(self, key: AttrKey, at: float | None = None) -> None:
        """A request started at ``at`` (``time.perf_counter()``; ``None``: left out of :meth:`busy_seconds`)."""
        lock = self._lock
        lock.acquire()
        try:
            active = self._active
            active[key] = active.get(key, 0) + 1
            if at is not None:
                self._in_flight += 1
                self._start_sum += at
        finally:
            lock.release()

    def finished(
        self, active_key: AttrKey, duration_key: AttrKey, seconds: float, started_at: float | None = None
    ) -> None:
        """A request that :meth:`started` at ``started_at`` took ``seconds`` (pass the same ``at`` as then)."""
        lock = self._lock
        lock.acquire()
        try:
            if started_at is not None:
                self._in_flight -= 1
                self._start_sum -= started_at
                self._served_seconds += seconds
            self._active[active_key] -= 1
            histogram = self._durations.get(duration_key)
            if histogram is None:
                histogram = self._durations[duration_key] = _Histogram(self._bounds)
            histogram.record_value(seconds)
        finally:
            lock.release()

    def queued(self, seconds: float) -> None:
        with self._lock:
            self._queue.record_value(seconds)

    def invalid_header(self) -> None:
        with self._lock:
            self._invalid_headers += 1

    def busy_seconds(self, now: float) -> float:
        """Request-seconds served up to ``now`` (``time.perf_counter()``): the integral of requests in flight over
        time, so its growth over an interval, divided by the interval, is the average number in flight."""
        with self._lock:
            registered = list(self.in_flight.values())  # one C call: atomic against the request threads
            busy = self._served_seconds + self._in_flight * now - self._start_sum
        for entry in registered:
            busy += now - entry[0]
        return busy

    def snapshot(self) -> Snapshot:
        """Cumulative points of every request metric that has seen a request (called on the reporting thread)."""
        with self._lock:
            registered = list(self.in_flight.values())
            snapshot: Snapshot = {}
            if self._active or registered:
                active = dict(self._active)
                for entry in registered:
                    active[entry[1]] = active.get(entry[1], 0) + 1
                snapshot[inst.ACTIVE_REQUESTS.meta] = dict(active)
            if self._durations:
                points: dict[AttrKey, Value] = {k: h.value(h.bounds) for k, h in self._durations.items()}
                wall_ns, perf = time.time_ns(), time.perf_counter()
                exemplars = {k: h.take_exemplars(wall_ns, perf) for k, h in self._durations.items() if h.samples}
                snapshot[inst.REQUEST_DURATION.meta] = with_exemplars(points, exemplars)
            if self._slow_counts:
                snapshot[inst.SLOW_REQUESTS.meta] = dict(self._slow_counts)
            if any(self._queue.counts):
                snapshot[inst.QUEUE_DURATION.meta] = {(): self._queue.value(self._queue.bounds)}
            if self._invalid_headers:
                snapshot[inst.QUEUE_HEADER_INVALID.meta] = {(): self._invalid_headers}
            folded = getattr(self.route_bound, "folded", 0)
            if folded:
                snapshot[inst.ROUTES_OVERFLOW.meta] = {(): folded}
            return snapshot
