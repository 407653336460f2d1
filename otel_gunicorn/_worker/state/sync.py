"""The ``sync`` worker (``gunicorn.workers.sync.SyncWorker``): nothing to read beyond the request hooks.

The sync worker serves one connection at a time on its main thread — ``accept()``, then ``handle()`` to the end of
the response, then the next ``accept()`` (``SyncWorker.run_for_one``/``run_for_multiple``) — and keeps no counter of
it: ``nr`` counts requests served so far, not open ones. Its "active requests" (0 or 1) are exactly what
``pre_request``/``post_request`` bracket (``SyncWorker.handle_request``), so they are measured there, not here.
No connection cap either: ``worker_connections`` is not read by this class. Same in gunicorn 23.0.

``--worker-class sync --threads N`` with N > 1 runs ``ThreadWorker`` instead (gunicorn/config.py), whose class picks
the :mod:`.gthread` reader.
"""

from __future__ import annotations

from collections.abc import Callable

from otel_gunicorn._worker.state import WorkerStateReader

__all__ = ["SyncReader"]


class SyncReader(WorkerStateReader):
    """``SyncWorker``: no connection or thread state; requests come through ``pre_request``/``post_request``."""

    requests_via_hooks = True

    def serving(self) -> Callable[[], object] | None:
        """None: one request at a time, on the main thread; nothing to tell apart."""
        return None
