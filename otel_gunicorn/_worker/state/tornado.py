"""The ``tornado`` worker (``gunicorn.workers.gtornado.TornadoWorker``): open connections, read from tornado.

``TornadoWorker.run()`` stores its ``tornado.httpserver.HTTPServer`` subclass as ``self.server`` (also in 23.0).
Tornado's ``HTTPServer`` keeps every open HTTP/1 connection in the set ``_connections``: ``handle_stream`` adds it,
``on_close`` removes it, both on the IOLoop (tornado/httpserver.py; private, so read defensively). Its ``len()`` is
the open connections, idle keep-alive included. ``self.server`` appears only once ``run()`` starts, after
``post_worker_init``: until then, and for any other layout, the value is absent.

No connection cap: ``HTTPServer`` has none and this worker does not read ``worker_connections``.

Requests: the worker never calls ``pre_request``/``post_request``; it only counts closed connections in ``nr``
(``_HTTPServer.on_close`` → ``handle_request``). ``run()`` reads ``self.wsgi`` and puts anything that is neither a
``tornado.web.Application`` nor a ``tornado.wsgi.WSGIContainer`` into a ``WSGIContainer``: such a WSGI application
is wrapped for request metrics. A tornado ``Application`` is not WSGI, and a ready-made ``WSGIContainer`` may run
its application on an executor's threads, where a context attached for the request could not be detached; both are
left alone, without request metrics.

Hazards: read from the metric reader thread while the IOLoop adds and removes connections: only ``len()`` is taken.
"""

from __future__ import annotations

from typing import Any

from otel_gunicorn._worker.state import WorkerStateReader, absent_on_error, size

__all__ = ["TornadoReader"]


class TornadoReader(WorkerStateReader):
    """``TornadoWorker``: open connections from tornado's ``HTTPServer``; no cap; no request hooks."""

    requests_via_hooks = False

    def app_interface(self) -> str | None:
        """``"wsgi"`` for a plain WSGI application, ``None`` for a tornado ``Application`` or ``WSGIContainer``."""
        # A tornado worker has imported both modules already (gunicorn.workers.gtornado does).
        from tornado.web import Application
        from tornado.wsgi import WSGIContainer

        app = getattr(self._worker, "wsgi", None)
        return None if app is None or isinstance(app, (Application, WSGIContainer)) else "wsgi"

    @absent_on_error
    def active_connections(self) -> int | None:
        """``len(worker.server._connections)``: tornado's open HTTP connections."""
        return size(getattr(getattr(self._worker, "server", None), "_connections", None))

    @absent_on_error
    def event_loop(self) -> Any:
        """The asyncio loop under ``worker.ioloop`` (tornado >= 5 runs its IOLoop on asyncio), set in ``run()``."""
        return getattr(getattr(self._worker, "ioloop", None), "asyncio_loop", None)
