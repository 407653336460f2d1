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
- **Django**: ``request.META`` is the environ, but Django leaves no way from the environ back to the request. At
  ``post_worker_init`` :func:`install` puts one function first in the handler's view-middleware list
  (``WSGIHandler._view_middleware``, what ``process_view`` methods become; Django calls it right after URL
  resolution, never for a 404): it copies ``request.resolver_match.route`` (``items/<int:item_id>/``, no leading
  slash, as Django and its OpenTelemetry instrumentation have it) into the environ under :data:`ROUTE_KEY`. A view
  that sets the key itself runs later, so its value wins.
- **Starlette / FastAPI**: Starlette's router does ``scope["route"] = route`` and ``scope.update(child_scope)`` on the
  scope it was given (FastAPI's ``APIRoute`` also puts itself there), so an outer ASGI wrapper reads
  ``scope["route"].path`` (``/items/{item_id}``) once the application returned. A Starlette older than that leaves
  only ``scope["endpoint"]``: its route is found by endpoint in ``scope["app"].routes`` (a map built once per
  application), and only when one endpoint serves two paths by matching ``app.routes`` as the router does.

gunicorn's asgi worker hands ``post_request`` no scope: :class:`ASGIRouteCapture`, around the application, leaves the
route in a context variable that the request's ``post_request`` — run in the same task, after the application
returned — reads (:func:`captured_asgi_route`).

Bounded (:class:`RouteBound`): a worker keeps at most ``OTEL_GUNICORN_MAX_ROUTES`` distinct routes; later new ones
become :data:`OVERFLOW_ROUTE`, counted and logged once.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

_log = logging.getLogger("otel_gunicorn")

#: the environ / scope key an application sets to name a request's route by hand (custom routing)
ROUTE_KEY = "otel_gunicorn.route"
#: the value new routes fold into once a worker has seen ``OTEL_GUNICORN_MAX_ROUTES`` of them
OVERFLOW_ROUTE = "_OTHER"


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
    matched = scope.get("route")
    if matched is not None:
        path = getattr(matched, "path", None)
        return path if path.__class__ is str else None
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return None
    return _STARLETTE.route(scope, endpoint)


class _StarletteRoutes:
    """Route templates of an older Starlette application by endpoint, built once per application (a worker serves
    one); endpoints serving several paths are matched as the router does."""

    def __init__(self) -> None:
        self._app: Any = None
        self._by_endpoint: dict[Any, str | None] = {}

    def route(self, scope: Any, endpoint: Any) -> str | None:
        app = scope.get("app")
        if app is None:
            return None
        if app is not self._app:
            self._by_endpoint = _routes_by_endpoint(app)
            self._app = app
        try:
            template = self._by_endpoint.get(endpoint, "")
        except TypeError:  # an unhashable endpoint
            template = None
        if template is None:  # ambiguous: several paths share this endpoint
            return _matching_route(app, scope)
        return template or None


def _routes_by_endpoint(app: Any) -> dict[Any, str | None]:
    by_endpoint: dict[Any, str | None] = {}
    for route in getattr(app, "routes", None) or ():
        endpoint, path = getattr(route, "endpoint", None), getattr(route, "path", None)
        if endpoint is None or not isinstance(path, str):
            continue
        try:
            by_endpoint[endpoint] = path if by_endpoint.get(endpoint, path) == path else None
        except TypeError:
            continue
    return by_endpoint


def _matching_route(app: Any, scope: Any) -> str | None:
    """What OpenTelemetry's Starlette instrumentation does: the first route matching fully, else the last partial."""
    from starlette.routing import Match  # imported only here: only a Starlette application gets here

    found = None
    for route in getattr(app, "routes", None) or ():
        match, _child = route.matches(scope)
        if match is Match.FULL:
            return str(route.path)
        if match is Match.PARTIAL:
            found = str(route.path)
    return found


_STARLETTE = _StarletteRoutes()


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
    """If ``app`` (``worker.wsgi``) is a Flask application or Django's WSGI handler, or wraps one, make it leave each
    request's route in its environ; return which (``"flask"``, ``"django"``) or None. Neither framework is imported
    here: only one the application loaded is looked at."""
    flask_class = getattr(sys.modules.get("flask"), "Flask", None)
    django_class = getattr(sys.modules.get("django.core.handlers.wsgi"), "WSGIHandler", None)
    if flask_class is None and django_class is None:
        return None
    for _depth in range(4):  # the application, or a middleware or two around it
        if flask_class is not None and isinstance(app, flask_class):
            return "flask" if _install_flask(app) else None
        if django_class is not None and isinstance(app, django_class):
            return "django" if _install_django(app) else None
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


def _install_django(app: Any) -> bool:
    views = getattr(app, "_view_middleware", None)
    if not isinstance(views, list):
        return False
    if _django_route not in views:
        views.insert(0, _django_route)
    return True


def _django_route(request: Any, _view: Any, _args: Any, _kwargs: Any) -> None:
    """A ``process_view``: Django has resolved the URL; keep its route template in the environ."""
    try:
        route = request.resolver_match.route
        if route.__class__ is str:
            request.META.setdefault(ROUTE_KEY, route)
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
