"""The worker's own server gauges: connections, thread pool, average concurrency, event-loop busy share and, under
``reuse_port``, its listener queue.

Runs in a worker; registered in ``post_worker_init`` on its main thread. Each callback is a pure reader of the
worker's current state through the worker-class adapter (:mod:`otel_gunicorn._worker.state`), called on the SDK's
reader thread: it builds fresh attribute dicts every time, never raises, and yields nothing when the adapter cannot
measure a value — the metric is then absent, not 0. The two averages over the report interval (concurrency, loop
busy share) are the exception: they keep the previous reading, where the interval began. The arbiter adds
``gunicorn.worker.slot`` to every gauge when it merges, so none is added here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_gunicorn import _instruments as inst
from otel_gunicorn._listeners import listener_points
from otel_gunicorn._worker.interval import Rate
from otel_gunicorn._worker.loop_time import LoopUtilization
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.state import WorkerStateReader


def _gauge(meter: Meter, instrument: inst.Instrument, read: Callable[[], Iterable[Observation]]) -> None:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        try:
            return list(read())
        except Exception:  # noqa: BLE001 - a failing reader means an absent series, never a failed collection
            return []

    meter.create_observable_gauge(instrument.name, [callback], unit=instrument.unit, description=instrument.description)


def _one(value: int | None) -> list[Observation]:
    return [] if value is None else [Observation(value)]


def register(meter: Meter, state: WorkerStateReader, requests: RequestStats | None = None) -> None:
    """Connections, thread-pool and event-loop gauges read through ``state``; average concurrency from
    ``requests``."""
    _gauge(meter, inst.ACTIVE_CONNECTIONS, lambda: _one(state.active_connections()))
    _gauge(meter, inst.CONNECTION_LIMIT, lambda: _one(state.connection_limit()))

    def threads() -> list[Observation]:
        pool = state.thread_pool()
        if pool is None:
            return []
        return [
            Observation(pool.busy, {"gunicorn.thread.state": "busy"}),
            Observation(max(pool.limit - pool.busy, 0), {"gunicorn.thread.state": "idle"}),
        ]

    def thread_limit() -> list[Observation]:
        pool = state.thread_pool()
        return [] if pool is None else [Observation(pool.limit)]

    def thread_queue() -> list[Observation]:
        pool = state.thread_pool()
        return [] if pool is None or pool.queued is None else [Observation(pool.queued)]

    _gauge(meter, inst.THREADS, threads)
    _gauge(meter, inst.THREAD_LIMIT, thread_limit)
    _gauge(meter, inst.THREAD_QUEUE, thread_queue)

    # Not a pure reader: a busy share needs the previous reading. The SDK's one periodic reader calls it once per
    # report, so each value covers one report interval.
    loop = LoopUtilization(state)

    def loop_utilization() -> list[Observation]:
        ratio = loop.ratio()
        return [] if ratio is None else [Observation(ratio)]

    _gauge(meter, inst.LOOP_UTILIZATION, loop_utilization)
    if requests is not None:
        # Only where requests reach ``requests``: through the request hooks the worker class calls, or through the
        # application wrapper (a class without hooks whose application cannot be wrapped measures nothing, and gets
        # no made-up 0). The arbiter also reads this gauge as "this worker measures its requests" (busy/idle).
        stats = requests
        _gauge(meter, inst.CONCURRENCY, _average(stats.busy_seconds, lambda: state.requests_via_hooks or stats.wrapped))


def _average(total_at: Callable[[float], float], measured: Callable[[], bool]) -> Callable[[], list[Observation]]:
    """Observations of ``total_at(now)``'s growth per second since the previous report (a running total of
    seconds becomes an average count), none while ``measured()`` is False. Keeps the previous reading, like the
    loop's busy share."""
    start = time.perf_counter()
    rate = Rate(start, total_at(start))

    def read() -> list[Observation]:
        now = time.perf_counter()
        value = rate.per_second(now, total_at(now))
        return [] if value is None or not measured() else [Observation(value)]

    return read


def register_own_listeners(meter: Meter, worker: Any) -> None:
    """Under ``reuse_port`` each worker has its own listening sockets and accept queues: measure them here."""

    def sockets() -> list[tuple[str, socket.socket]]:
        return [(str(lst), lst.sock) for lst in list(getattr(worker, "sockets", None) or []) if hasattr(lst, "sock")]

    def queued() -> list[Observation]:
        points, _limits = listener_points(sockets())
        return [Observation(value, dict(key)) for key, value in points.items()]  # type: ignore[arg-type]

    def limits() -> list[Observation]:
        _points, points = listener_points(sockets())
        return [Observation(value, dict(key)) for key, value in points.items()]  # type: ignore[arg-type]

    _gauge(meter, inst.LISTENER_QUEUED, queued)
    _gauge(meter, inst.LISTENER_LIMIT, limits)
