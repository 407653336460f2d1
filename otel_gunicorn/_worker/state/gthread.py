"""The ``gthread`` worker (``gunicorn.workers.gthread.ThreadWorker``): open connections, their cap, the thread pool.

How gunicorn 24.0+ (the rewrite; checked against 27.0.1) moves a connection, all on the worker's main thread:

- ``accept()`` does ``self.nr_conns += 1`` and at once ``enqueue_req(conn)``, which is ``self.tpool.submit(...)``:
  a new connection goes straight into the pool. While every thread is busy it waits in the executor's work queue —
  **counted in** ``nr_conns`` and in no deque. Accepting stops while ``nr_conns >= worker_connections`` (``run()``).
- When ``handle()`` returns, a done-callback defers ``finish_request`` to the main thread (``method_queue``), which
  either closes the connection (``nr_conns -= 1``), parks it in ``keepalived_conns`` (keep-alive, waiting for the
  next request) or, since 25.2, in ``pending_conns`` (``handle()`` returned ``_DEFER``: no bytes within 5 s).
  A parked connection that becomes readable leaves its deque and is submitted again; expiry closes it.

So ``nr_conns - len(keepalived_conns) - len(pending_conns)`` is the work inside the pool: running on a thread,
queued for one, or finished a moment ago with ``finish_request`` not yet run. Queued is the private
``tpool._work_queue.qsize()``; busy is the rest, clamped to ``[0, threads]`` because the three reads are not one
atomic snapshot. A thread counts as busy from the moment it takes a connection, including while it waits for a new
connection's first bytes (at most 5 s since 25.2, ``TConn.wait_for_data``): the thread is taken either way.

Before 25.2 ``pending_conns`` does not exist and nothing is ever deferred (no ``_DEFER`` in the module), so its
absence means 0; if the module can defer but the attribute is gone, the split is unknown and the pool is absent.

gunicorn 23.x (before the rewrite) has no ``keepalived_conns``: ``accept()`` counts ``nr_conns`` and registers the
socket with the poller, and only a readable connection is submitted, its future appended to the ``futures`` deque.
The main loop removes finished futures after its next ``poller.select(1.0)`` wakes, so ``len(futures)`` — used as the
work inside the pool there — also counts work that finished up to ~1 s ago: busy can over-read by that.
In 23.x ``finish_request`` runs on the pool thread, so ``nr_conns`` is also decremented off the main thread
(unlocked; gunicorn's own accept limit reads the same number).

Hazards: read from the metric reader thread while the main thread mutates everything here. Only ints and ``len()``
are read (in 24.0+ ``nr_conns`` and the deques change on the main thread only); the deques are never iterated.
"""

from __future__ import annotations

import sys
from typing import Any

from otel_gunicorn._worker.state import ThreadPool, WorkerStateReader, absent_on_error, count, size

__all__ = ["ThreadWorkerReader"]


class ThreadWorkerReader(WorkerStateReader):
    """``ThreadWorker``: ``nr_conns`` of ``worker_connections`` connections, ``cfg.threads`` threads."""

    requests_via_hooks = True

    def __init__(self, worker: Any) -> None:
        super().__init__(worker)
        # 25.2 added deferral (the _DEFER sentinel) together with pending_conns. Looked up in gunicorn's module, not
        # the worker's: a subclass elsewhere still runs gunicorn's accept/finish_request.
        self._can_defer = hasattr(sys.modules.get("gunicorn.workers.gthread"), "_DEFER")

    @absent_on_error
    def active_connections(self) -> int | None:
        """``nr_conns``: accepted and not yet closed — running, queued for a thread, kept alive or pending."""
        return count(getattr(self._worker, "nr_conns", None))

    @absent_on_error
    def connection_limit(self) -> int | None:
        """``worker_connections``: ``run()`` stops accepting while ``nr_conns`` is at or above it."""
        return count(getattr(self._worker, "worker_connections", None))

    @absent_on_error
    def thread_pool(self) -> ThreadPool | None:
        """Busy threads, ``cfg.threads`` and the executor's queue depth; ``None`` if the split is unreadable."""
        limit = count(getattr(getattr(self._worker, "cfg", None), "threads", None))
        in_pool = self._work_in_pool()
        if not limit or in_pool is None:
            return None
        queued = _queue_depth(getattr(self._worker, "tpool", None))
        # Without a readable queue (a custom get_thread_pool()), everything in the pool up to the thread count is
        # taken to be running: a ThreadPoolExecutor only queues work while all its threads are busy.
        busy = min(max(in_pool - (queued or 0), 0), limit)
        return ThreadPool(busy, limit, queued)

    def _work_in_pool(self) -> int | None:
        """Connections handed to the pool and not yet back on the main thread, or ``None`` if unreadable."""
        worker = self._worker
        keepalived = size(getattr(worker, "keepalived_conns", None))
        if keepalived is not None:  # 24.0+
            nr_conns = count(getattr(worker, "nr_conns", None))
            pending = size(getattr(worker, "pending_conns", None))
            if pending is None:
                if self._can_defer:
                    return None
                pending = 0  # 24.0 to 25.1: nothing is ever deferred
            return None if nr_conns is None else nr_conns - keepalived - pending
        # 23.x: futures of submitted work, removed by the main loop after they finish.
        return size(getattr(worker, "futures", None))


@absent_on_error
def _queue_depth(pool: Any) -> int | None:
    """Work items waiting in a ``ThreadPoolExecutor`` (private ``_work_queue``, a ``SimpleQueue``), else ``None``."""
    qsize = getattr(getattr(pool, "_work_queue", None), "qsize", None)
    return None if qsize is None else count(qsize())
