"""``http.route`` of a request: the framework's route template, read after the application ran, and its bound.

Runs in a worker, on the request path (the thread, greenlet or event loop serving the request): only dict lookups and
attribute reads here, no regex, and nothing may raise into the request. Where each framework keeps its template:

- **the manual key** (:data:`ROUTE_KEY`, ``"otel_gunicorn.route"``), set by the application in its WSGI environ or
  ASGI scope, wins over everything else: the way for custom routing to name its routes.
- **Flask**: werkzeug's ``Request`` stores itself as ``environ["werkzeug.request"]`` and Flask's has ``url_rule``
  (None for a 404) whose ``rule`` is the template (``/items/<int:item_id>``) — but Flask sets that environ entry to
  None when it pops the request context, before its ``wsgi_app`` returns, so nothing is left to read afterwards. At
  ``post_worker_init`` :func:`install` adds one teardown function to the application
  (``app.teardown_request_funcs[None]``, what ``@app.teardown_request`` fills; Flask calls it on every request, the
  context still pushed) that copies ``url_rule.rule`` into the environ under :data:`ROUTE_KEY`.
- **Django**: ``request.resolver_match.route`` once Django resolved the URL (``v1/items/<int:item_id>`` through an
  ``include("v1/", ...)``: no leading slash, as Django and its OpenTelemetry instrumentation have it), but Django
  leaves no way from the environ or the scope back to the request. At ``post_worker_init`` :func:`install` puts one
  function first in the handler's view-middleware list (``_view_middleware``, what ``process_view`` methods become;
  Django calls it right after URL resolution, never for a 404) that copies the route under :data:`ROUTE_KEY`: into
  ``request.META`` under the WSGI handler (it *is* the environ), into ``request.scope`` under the ASGI handler (the
  scope the server passed; ``META`` is a dict of its own there, and the handler awaits its view middleware, so
  that function is a coroutine). A view that sets the key itself runs later, so its value wins.
- **Starlette / FastAPI**: what the router leaves in the scope (``scope["route"]``, FastAPI's included-router
  context, the mounts the route is reachable under): :mod:`otel_gunicorn._worker.starlette_routes`.

gunicorn's asgi worker hands ``post_request`` no scope: :class:`ASGIRouteCapture`, around the application, leaves the
route in a context variable that the request's ``post_request`` — run in the same task, after the application
returned — reads (:func:`captured_asgi_route`).

Bounded (:class:`RouteBound`): a worker keeps at most ``OTEL_GUNICORN_MAX_ROUTES`` distinct routes; later new ones
become :data:`OVERFLOW_ROUTE`, counted and logged once. That bounds what a worker holds and names its spans with; the
arbiter holds the merged metric to the same number of routes for the whole server (``_arbiter/route_bound.py``).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from otel_gunicorn import _instruments as inst
from otel_gunicorn._worker.starlette_routes import starlette_route

_log = logging.getLogger("otel_gunicorn")

#: the environ / scope key an application sets to name a request's route by hand (custom routing)
ROUTE_KEY = "otel_gunicorn.route"
#: the value new routes fold into once a worker has seen ``OTEL_GUNICORN_MAX_ROUTES`` of them
OVERFLOW_ROUTE = inst.OVERFLOW_ROUTE


def wsgi_route(environ: Any) -> str | None:
    """The route template of a finished WSGI request, or None (no route matched, or no framework we know)."""
    route = environ.get(ROUTE_KEY)
    if route is not None:
        return route if route.__class__ is str else None
    return None


def asgi_route(scope: Any) -> str | None:
    """The route template of an ASGI request whose application returned (or is sending its response), or None."""
    route = scope.get(ROUTE_KEY)
    if route is not None:
        return route if route.__class__ is str else None
    return starlette_route(scope)


# ---------------------------------------------------------------- gunicorn's asgi worker (hook path, no scope)

_CAPTURED: ContextVar[str | None] = ContextVar("otel_gunicorn.captured_route", default=None)


def captured_asgi_route() -> str | None:
    """The route :class:`ASGIRouteCapture` left for the request whose ``post_request`` runs now; forgets it."""
    route = _CAPTURED.get()
    if route is not None:
        _CAPTURED.set(None)
    return route


class ASGIRouteCapture:
    """ASGI wrapper for gunicorn's asgi worker: after an HTTP request's application call, the route goes where
    ``post_request`` (same task, right after) reads it. gunicorn awaits the application directly, so a context
    variable set here is still set there."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope.get("type") == "http":
                try:
                    _CAPTURED.set(asgi_route(scope))
                except Exception:  # noqa: BLE001 - never break a request for telemetry
                    _CAPTURED.set(None)


# ---------------------------------------------------------------- Flask and Django: the route left in the environ


def install(app: Any) -> str | None:
    """If ``app`` (the application the worker loaded) is a Flask application or one of Django's handlers (WSGI or
    ASGI), or wraps one, make it leave each request's route where the worker reads it (the environ, or the scope);
    return which (``"flask"``, ``"django"``) or None. Neither framework is imported here: only one the application
    loaded is looked at."""
    flask_class = getattr(sys.modules.get("flask"), "Flask", None)
    django_wsgi = getattr(sys.modules.get("django.core.handlers.wsgi"), "WSGIHandler", None)
    django_asgi = getattr(sys.modules.get("django.core.handlers.asgi"), "ASGIHandler", None)
    if flask_class is None and django_wsgi is None and django_asgi is None:
        return None
    for _depth in range(4):  # the application, or a middleware or two around it
        if flask_class is not None and isinstance(app, flask_class):
            return "flask" if _install_flask(app) else None
        if django_wsgi is not None and isinstance(app, django_wsgi):
            return "django" if _install_django(app, _django_route) else None
        if django_asgi is not None and isinstance(app, django_asgi):
            return "django" if _install_django(app, _django_route_async) else None
        app = getattr(app, "application", None) or getattr(app, "app", None) or getattr(app, "wsgi", None)
        if app is None:
            return None
    return None


def _install_flask(app: Any) -> bool:
    funcs = getattr(app, "teardown_request_funcs", None)
    if not isinstance(funcs, dict):
        return False
    request = sys.modules["flask"].request  # the context-local proxy: the request being torn down

    def otel_gunicorn_route(_exc: BaseException | None) -> None:
        try:
            rule = request.url_rule
            if rule is not None:
                request.environ.setdefault(ROUTE_KEY, rule.rule)
        except Exception:  # noqa: BLE001 - never break a request for telemetry: the request has no route
            pass

    own = funcs.setdefault(None, [])
    if not any(getattr(f, "__name__", "") == otel_gunicorn_route.__name__ for f in own):
        own.append(otel_gunicorn_route)
    return True


def _install_django(app: Any, process_view: Callable[..., Any]) -> bool:
    views = getattr(app, "_view_middleware", None)
    if not isinstance(views, list):
        return False
    if process_view not in views:
        views.insert(0, process_view)
    return True


def _django_route(request: Any, _view: Any, _args: Any, _kwargs: Any) -> None:
    """A ``process_view`` for Django's WSGI handler: Django has resolved the URL; keep its route template in the
    environ (``request.META`` is the environ)."""
    try:
        route = request.resolver_match.route
        if route.__class__ is str:
            request.META.setdefault(ROUTE_KEY, route)
    except Exception:  # noqa: BLE001 - never break a request for telemetry: the request has no route
        pass


async def _django_route_async(request: Any, _view: Any, _args: Any, _kwargs: Any) -> None:
    """The same for Django's ASGI handler, which awaits its view middleware: there ``request.META`` is a dict of its
    own, built from the scope, and ``request.scope`` is the scope the server passed (and the worker reads)."""
    try:
        route = request.resolver_match.route
        if route.__class__ is str:
            request.scope.setdefault(ROUTE_KEY, route)
    except Exception:  # noqa: BLE001 - never break a request for telemetry: the request has no route
        pass


# ---------------------------------------------------------------- the bound


class RouteBound:
    """At most ``limit`` distinct routes per worker; later new ones are :data:`OVERFLOW_ROUTE`, counted in
    :attr:`folded` and logged once. Called on the request path: a known route is one dict lookup."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._known: dict[str, str] = {}
        #: requests whose route was folded into :data:`OVERFLOW_ROUTE`
        self.folded = 0
        self._warned = False
        self._lock = threading.Lock()  # new routes only: a known one never takes it

    def __call__(self, route: object) -> str | None:
        """``route`` as the request path has it (None, not counted, for anything but a str: the manual key can hold
        anything), or :data:`OVERFLOW_ROUTE`."""
        if route.__class__ is not str:
            return None
        return self._known.get(route) or self._new(route)

    def _new(self, route: str) -> str:
        with self._lock:
            if route in self._known or len(self._known) < self._limit:
                self._known[route] = route
                return route
            self.folded += 1
            warn, self._warned = not self._warned, True
        if warn:
            _log.warning(
                "otel_gunicorn: more than %d distinct http.route values in this worker (OTEL_GUNICORN_MAX_ROUTES): "
                "new ones, first %r, are recorded as http.route=%r",
                self._limit,
                route,
                OVERFLOW_ROUTE,
            )
        return OVERFLOW_ROUTE
