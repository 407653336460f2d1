"""Request metrics and spans where gunicorn calls no request hooks: around the application, inside the worker.

Runs in a worker. gevent_pywsgi, tornado and uvicorn-worker serve requests without ``pre_request``/``post_request``,
but each reads ``worker.wsgi`` only in ``run()``, which gunicorn calls right after ``post_worker_init``
(``Worker.init_process``: ``load_wsgi()``, ``post_worker_init``, ``run()``). :func:`install`, called from
``post_worker_init``, replaces ``worker.wsgi`` with a WSGI (:mod:`.wsgi`) or ASGI (:mod:`.asgi`) wrapper that feeds
the same :class:`~otel_gunicorn._worker.requests.RequestObserver` core as the hooks, so a request is measured the
same way whichever path saw it.

Never both for one request: the caller installs a wrapper only for a worker class whose reader says
``requests_via_hooks`` is False, and each wrapper marks the environ or scope it has seen, so an application
wrapped twice is counted once.

Hazards: the wrappers are on the request path (the greenlet, IOLoop or asyncio task serving it): cheap, and no
telemetry step may raise into the application; the application's own exceptions pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from otel_gunicorn._worker.app_boundary.asgi import ASGIRequests
from otel_gunicorn._worker.app_boundary.wsgi import WSGIRequests
from otel_gunicorn._worker.requests import RequestObserver

__all__ = ["ASGIRequests", "WSGIRequests", "install"]

_WRAPPERS: dict[str, Any] = {"wsgi": WSGIRequests, "asgi": ASGIRequests}


def install(worker: Any, observer: RequestObserver, interface: str | None) -> bool:
    """Wrap ``worker.wsgi`` for ``interface`` (``"wsgi"`` or ``"asgi"``); return whether it was wrapped."""
    wrapper = _WRAPPERS.get(interface) if interface is not None else None
    app = getattr(worker, "wsgi", None)
    if wrapper is None or app is None:
        return False
    worker.wsgi = wrapper(app, observer)
    observer.wrapping()
    return True
