"""Metrics the arbiter measures itself: listener queues, workers, exits, heartbeats, and otel_gunicorn's own.

Runs in the arbiter, on the scrape (or export) thread, under the runtime lock. Reads gunicorn's arbiter state
defensively: ``LISTENERS`` and ``WORKERS`` are re-read at every collection because HUP may replace them, and a
listener whose probe fails is left out (logged once) rather than reported as 0.
"""

from __future__ import annotations

import time
from typing import Any

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

    # busy/idle is known only where workers report in-flight requests (the hook-driven worker classes)
    in_flight = store.sums_by_pid(inst.ACTIVE_REQUESTS.name)
    if in_flight:
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
