"""Metrics the arbiter measures itself: listener queues, workers, exits, heartbeats, and otel_gunicorn's own.

Runs in the arbiter, on the scrape (or export) thread, under the runtime lock. Reads gunicorn's arbiter state
defensively: ``LISTENERS`` and ``WORKERS`` are re-read at every collection because HUP may replace them, and a
listener whose probe fails is left out (logged once) rather than reported as 0.

The utilisation signal (``gunicorn.server.utilization`` and ``.capacity``, docs/utilization.md) is computed here
too, at collect time, from the merged snapshot: the workers' latest gauges and the arbiter's own listener probes.
What limits a server is chosen by its worker class (the arbiter's ``worker_class``, matched by name along its MRO so
that nothing here imports gevent, tornado or uvicorn); the inputs are what the workers report, and a class whose
inputs are missing gets no signal rather than a made-up 0.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from otel_gunicorn import _handoff
from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.channel import ChannelStats
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._arbiter.otlp import OtlpPusher
from otel_gunicorn._arbiter.prometheus import PrometheusEndpoint
from otel_gunicorn._listeners import listener_points
from otel_gunicorn._snapshot import AttrKey, Snapshot, Value


def collect(server: Any, store: MergeStore, exits: dict[str, int]) -> Snapshot:
    """Everything the arbiter measures itself, as a snapshot ready to merge with the workers'.

    Args:
        server: gunicorn's arbiter.
        store: the merge store (for workers' in-flight requests).
        exits: settled worker exits by reason.
    """
    snapshot: Snapshot = {}
    listeners = [(str(lst), lst.sock) for lst in list(getattr(server, "LISTENERS", None) or []) if hasattr(lst, "sock")]
    queued, limits = listener_points(listeners)
    if queued:
        snapshot[inst.LISTENER_QUEUED.meta] = queued
        snapshot[inst.LISTENER_LIMIT.meta] = limits

    workers = dict(getattr(server, "WORKERS", None) or {})
    limit = getattr(server, "num_workers", None)
    if isinstance(limit, int):
        snapshot[inst.WORKER_LIMIT.meta] = {(): limit}

    # busy/idle is known where workers measure their requests (every class but one whose application cannot be
    # wrapped). Such a worker reports its average concurrency from its first report on, its requests in flight from
    # its first request on: reporting the former without the latter, it has served none yet and is idle.
    in_flight = store.sums_by_pid(inst.ACTIVE_REQUESTS.name)
    measuring = in_flight.keys() | store.sums_by_pid(inst.CONCURRENCY.name).keys()
    if any(pid in measuring for pid in workers):
        busy = sum(1 for pid in workers if in_flight.get(pid, 0) > 0)
        snapshot[inst.WORKER_COUNT.meta] = {
            (("gunicorn.worker.state", "busy"),): busy,
            (("gunicorn.worker.state", "idle"),): len(workers) - busy,
        }

    snapshot[inst.WORKER_EXITS.meta] = {
        (("gunicorn.worker.exit.reason", reason),): count for reason, count in exits.items()
    }
    ages = _heartbeat_ages(workers)
    if ages:
        snapshot[inst.HEARTBEAT_AGE.meta] = ages
    return snapshot


def _heartbeat_ages(workers: dict[int, Any]) -> dict[AttrKey, Value]:
    """Seconds since each live worker's last heartbeat, by slot (workers without a slot or a heartbeat left out)."""
    ages: dict[AttrKey, Value] = {}
    now = time.monotonic()
    for worker in workers.values():
        slot = _handoff.slot_of(worker)
        try:
            age = now - worker.tmp.last_update()
        except (AttributeError, OSError, ValueError):
            continue
        if slot is not None and age >= 0:  # negative: the worker has not sent its first heartbeat yet
            ages[((inst.SLOT_ATTRIBUTE, slot),)] = age
    return ages


# ---------------------------------------------------------------- the utilisation signal

WORKERS, THREADS, LOOPS = "workers", "threads", "loops"

#: what limits the work a worker class runs at once, by (module, qualname) along the class's MRO. A class not here
#: (a third-party worker) gets no signal: its limit is unknown.
LIMITS: dict[tuple[str, str], str] = {
    ("gunicorn.workers.sync", "SyncWorker"): WORKERS,
    ("gunicorn.workers.gthread", "ThreadWorker"): THREADS,
    # GeventPyWSGIWorker subclasses GeventWorker
    ("gunicorn.workers.ggevent", "GeventWorker"): LOOPS,
    ("gunicorn.workers.gasgi", "ASGIWorker"): LOOPS,
    ("gunicorn.workers.gtornado", "TornadoWorker"): LOOPS,
    ("uvicorn_worker._workers", "UvicornWorker"): LOOPS,
    ("uvicorn_worker.workers", "UvicornWorker"): LOOPS,
    ("uvicorn.workers", "UvicornWorker"): LOOPS,
}


def limited_by(worker_class: Any) -> str | None:
    """:data:`WORKERS`, :data:`THREADS` or :data:`LOOPS` for ``worker_class`` (or its nearest known base class)."""
    for cls in getattr(worker_class, "__mro__", ()):
        found = LIMITS.get((getattr(cls, "__module__", ""), getattr(cls, "__qualname__", "")))
        if found is not None:
            return found
    return None


class Load(NamedTuple):
    """A server's work, in units of what limits it: workers, request threads, or fully busy event loops."""

    capacity: int
    """Units that run work at once."""
    running: float
    """Units running work now (a loop's busy share counts as that fraction of a unit)."""
    waiting: float
    """Work queued for a unit: in the listener queue, and in thread pool queues."""


def utilization(load: Load) -> float | None:
    """(running + waiting) / capacity: 0 idle, 1 full, above 1 when work waits; ``None`` without capacity."""
    if load.capacity <= 0:
        return None
    return (load.running + load.waiting) / load.capacity


def load_of(limit: str | None, snapshot: Snapshot) -> Load | None:
    """The server's load from the merged ``snapshot``; ``None`` when what ``limit`` needs was not reported.

    Gauges in the merged snapshot are those of live workers only, one series per slot: a worker adds capacity once
    it has reported (its application is loaded), and stops adding it when it dies.

    Args:
        limit: what limits the worker class (:func:`limited_by`).
        snapshot: merged worker metrics plus the arbiter's own.
    """
    queued = _total(snapshot, inst.LISTENER_QUEUED)
    concurrency = _points(snapshot, inst.CONCURRENCY)
    if limit == WORKERS:
        # one request at a time: a worker's average concurrency is the share of the interval it was busy
        return Load(len(concurrency), sum(concurrency), queued) if concurrency else None
    if limit == THREADS:
        threads = _points(snapshot, inst.THREAD_LIMIT)
        if not threads or not concurrency:
            return None
        # a worker whose pool queue cannot be read adds nothing to the waiting work (docs/utilization.md)
        return Load(int(sum(threads)), sum(concurrency), _total(snapshot, inst.THREAD_QUEUE) + queued)
    if limit == LOOPS:
        # No waiting work: an event loop accepts whenever it runs, so what waits sits inside the loop (accepted
        # connections whose handlers wait for the CPU), out of reach; the listener queue holds only what arrived
        # during the current callback, and counted as a whole loop each it read +1 on one worker at light load.
        ratios = _points(snapshot, inst.LOOP_UTILIZATION)
        return Load(len(ratios), sum(ratios), 0.0) if ratios else None
    return None


def _points(snapshot: Snapshot, instrument: inst.Instrument) -> list[float]:
    """The number values of ``instrument`` in ``snapshot`` (one per live worker for a worker gauge)."""
    return [float(v) for v in (snapshot.get(instrument.meta) or {}).values() if isinstance(v, (int, float))]


def _total(snapshot: Snapshot, instrument: inst.Instrument) -> float:
    """Sum of ``instrument``'s points in ``snapshot``; 0 when absent."""
    return sum(_points(snapshot, instrument))


def utilization_metrics(server: Any, snapshot: Snapshot) -> Snapshot:
    """``gunicorn.server.utilization`` and ``.capacity`` from the merged ``snapshot`` (empty when unmeasurable).

    Args:
        server: gunicorn's arbiter (its ``worker_class``, re-read each time: HUP may change it).
        snapshot: merged worker metrics with :func:`collect`'s added.
    """
    load = load_of(limited_by(getattr(server, "worker_class", None)), snapshot)
    value = None if load is None else utilization(load)
    if load is None or value is None:
        return {}
    return {inst.SERVER_UTILIZATION.meta: {(): value}, inst.SERVER_CAPACITY.meta: {(): load.capacity}}


def own_metrics(channel: ChannelStats, pusher: OtlpPusher | None, endpoint: PrometheusEndpoint | None) -> Snapshot:
    """otel_gunicorn's own counters in the arbiter: the channel's, and the endpoint's and OTLP feeder's when they
    run."""
    own: Snapshot = {
        inst.CHANNEL_CONNECTIONS.meta: {
            (("outcome", "accepted"),): channel.connections_accepted,
            (("outcome", "refused"),): channel.connections_refused,
        },
        inst.CHANNEL_REPORTS.meta: {
            (("outcome", "accepted"),): channel.reports_received,
            (("outcome", "rejected"),): channel.frames_rejected,
        },
    }
    if pusher is not None:
        own[inst.OTLP_SNAPSHOTS.meta] = {
            (("outcome", "sent"),): pusher.pushed,
            (("outcome", "dropped"),): pusher.dropped,
        }
        own[inst.OTLP_RESTARTS.meta] = {(): pusher.restarts}
    if endpoint is not None:
        own[inst.ENDPOINT_FAMILIES_DROPPED.meta] = {(): endpoint.families.dropped_families}
        if endpoint.tls:  # the metric exists only where a handshake can fail
            own[inst.ENDPOINT_HANDSHAKES_FAILED.meta] = {(): endpoint.handshakes_failed}
    return own
