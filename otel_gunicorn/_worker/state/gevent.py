"""The gevent workers (``gunicorn.workers.ggevent``): the connection cap; open connections are not reachable.

``GeventWorker.run()`` builds one ``gevent.pool.Pool(self.worker_connections)`` per listening socket and hands it to
that listener's ``StreamServer`` (or ``PyWSGIServer``) as ``spawn``; a server stops accepting while its pool is full.
So the worker holds at most ``worker_connections × len(self.sockets)`` connections. (``self.sockets`` is the list
the worker serves: set before the fork, rebuilt per worker under ``reuse_port``, re-wrapped as gevent sockets by
``patch()`` — its length is the listener count every time.)

Open connections are **absent**: the pools and the servers are local variables of ``run()`` (``pool``,
``servers``), never stored on the worker, and gunicorn keeps no counter. Reaching them would mean walking the gevent
hub's watchers or ``gc.get_referrers()`` — neither cheap nor an interface. Same layout in gunicorn 23.0.

Requests: ``GeventWorker`` serves through ``AsyncWorker.handle_request``, which calls ``pre_request`` and
``post_request``. ``GeventPyWSGIWorker`` (``gevent_wsgi``, ``gevent_pywsgi``) hands requests to gevent's own
``pywsgi.WSGIHandler`` (subclassed only for access logging), which **never calls the hooks** (nor counts ``nr``);
its ``run()`` passes ``self.wsgi`` to each ``PyWSGIServer``, so the WSGI application is wrapped there instead.

Hazards: called from a greenlet on the worker's only OS thread (``threading`` is monkey-patched before
``post_worker_init``): it must not block — it only reads two attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otel_gunicorn._worker.state import WorkerStateReader, absent_on_error, count, size

__all__ = ["GeventPyWSGIReader", "GeventReader"]


class GeventReader(WorkerStateReader):
    """``GeventWorker``: a cap of ``worker_connections`` per listener; open connections unreadable."""

    requests_via_hooks = True

    def serving(self) -> Callable[[], object] | None:
        """The greenlet: each connection is served by a greenlet of the listener's pool."""
        from greenlet import getcurrent  # a gevent worker has imported greenlet already

        return getcurrent  # type: ignore[no-any-return]

    @absent_on_error
    def connection_limit(self) -> int | None:
        """``worker_connections`` times the number of listeners: one pool of that size per listener."""
        per_listener = count(getattr(self._worker, "worker_connections", None))
        listeners = size(getattr(self._worker, "sockets", None))
        if per_listener is None or listeners is None:
            return None
        return per_listener * listeners

    @absent_on_error
    def event_loop(self) -> Any:
        """The hub's loop. ``get_hub()`` is per thread: right on the worker's main thread (``post_worker_init``) and
        from the metric reader, a greenlet of that thread once ``threading`` is patched."""
        from gevent import get_hub  # a gevent worker has imported gevent already

        return get_hub().loop


class GeventPyWSGIReader(GeventReader):
    """``GeventPyWSGIWorker``: like ``GeventWorker``, but gevent's pywsgi serves requests without gunicorn's hooks."""

    requests_via_hooks = False

    def app_interface(self) -> str | None:
        """Always a WSGI application: pywsgi calls it with an environ for every request."""
        return "wsgi"
