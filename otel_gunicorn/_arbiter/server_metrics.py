"""Server metrics measured in the arbiter: listener queues, worker counts and limit, exits, heartbeats.

Runs in the arbiter, on the scrape (or export) thread, under the runtime lock. Reads gunicorn's arbiter state
defensively: ``LISTENERS`` and ``WORKERS`` are re-read at every collection because HUP may replace them, and a
listener whose probe fails is left out (logged once) rather than reported as 0.
"""

from __future__ import annotations

import time
from typing import Any

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.lifecycle import ExitLedger
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._listeners import listener_points
from otel_gunicorn._snapshot import AttrKey, Snapshot, Value


def collect(server: Any, store: MergeStore, exits: ExitLedger, slot_of: Any) -> Snapshot:
    """Everything the arbiter measures itself, as a snapshot ready to merge with the workers'."""
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
    in_flight = store.live_totals(inst.ACTIVE_REQUESTS.name)
    if in_flight:
        busy = sum(1 for pid in workers if in_flight.get(pid, 0) > 0)
        snapshot[inst.WORKER_COUNT.meta] = {
            (("gunicorn.worker.state", "busy"),): busy,
            (("gunicorn.worker.state", "idle"),): len(workers) - busy,
        }

    snapshot[inst.WORKER_EXITS.meta] = {
        (("gunicorn.worker.exit.reason", reason),): count for reason, count in exits.counts.items()
    }

    ages: dict[AttrKey, Value] = {}
    now = time.monotonic()
    for pid, worker in workers.items():
        slot = slot_of(pid)
        try:
            age = now - worker.tmp.last_update()
        except (AttributeError, OSError, ValueError):
            continue
        if slot is not None and age >= 0:  # negative: the worker has not sent its first heartbeat yet
            ages[((inst.SLOT_ATTRIBUTE, slot),)] = age
    if ages:
        snapshot[inst.HEARTBEAT_AGE.meta] = ages
    return snapshot
