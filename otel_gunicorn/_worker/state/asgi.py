"""gunicorn's own ``asgi`` worker (``gunicorn.workers.gasgi.ASGIWorker``, 24.0+; stable since 25.1): open connections.

``ASGIProtocol.connection_made`` does ``worker.nr_conns += 1`` and ``connection_lost`` ``-= 1`` (once per
connection, guarded by ``_conn_lost_handled``), both on the worker's event loop, so ``nr_conns`` is the open
connections — HTTP/1.x (idle keep-alive included), HTTP/2, WebSocket, uWSGI.

No connection cap: ``ASGIWorker.__init__`` stores ``self.worker_connections`` but nothing compares ``nr_conns`` to it —
the servers are ``loop.create_server(..., start_serving=True)`` with no limit, and the main loop's "Check connection
limit" is a comment with no code under it (gunicorn/workers/gasgi.py, ``_serve``). Reporting it as a limit would
promise a ceiling the worker does not enforce.

Not in gunicorn 23.0 (no ``gasgi`` module): the chooser never picks this reader there.

Hazards: read from the metric reader thread while the event loop runs; ``nr_conns`` is an int written only on the
loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from otel_gunicorn._worker.state import WorkerStateReader, absent_on_error, count

__all__ = ["ASGIReader"]


class ASGIReader(WorkerStateReader):
    """``ASGIWorker``: ``nr_conns`` open connections; ``worker_connections`` is not enforced, so no limit.

    ``requests_via_hooks`` is true for HTTP requests, with these exact rules (gunicorn/asgi/protocol.py, 27.0.1):

    - ``pre_request(worker, request)`` runs on the event loop, just before the application is awaited, for every
      HTTP/1.x request (``_handle_http_request``, also used for uWSGI) and every HTTP/2 stream
      (``_handle_http2_request``). ``_pre_request_hook`` skips it only when it is gunicorn's **default** hook and the
      error log is not at debug level (the default only logs at debug); any hook set in the config always runs.
    - ``post_request(worker, request, environ, resp)`` runs in the same method's ``finally`` once the application
      returns (or raises or is cancelled), skipped only when it is gunicorn's default no-op (``_post_request_hook``).
      ``environ`` and ``resp`` are ``None`` unless access logging is on; then ``resp.status`` is an int.
    - A WebSocket session (``_handle_websocket``) calls neither hook.
    - Both run on the loop: a hook that blocks stalls every connection of the worker.

    Up to 26.0 at least, ``pre_request`` was called unconditionally (no ``_pre_request_hook``); the rest holds.
    """

    requests_via_hooks = True
    asgi_via_hooks = True

    def serving(self) -> Callable[[], object] | None:
        """The task: gunicorn runs each connection's requests in a task of its own, on the loop that calls the
        hooks."""
        return asyncio.current_task

    @absent_on_error
    def active_connections(self) -> int | None:
        """``nr_conns``: transports between ``connection_made`` and ``connection_lost``."""
        return count(getattr(self._worker, "nr_conns", None))

    @absent_on_error
    def event_loop(self) -> Any:
        """``worker.loop``: created in ``init_process`` before ``post_worker_init`` (asyncio's, or uvloop's when
        ``asgi_loop`` picks it)."""
        return getattr(self._worker, "loop", None)
