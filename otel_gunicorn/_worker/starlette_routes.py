"""The route template of a Starlette or FastAPI request, read from its ASGI scope once the application returned.

Runs in a worker, on the event loop serving the request. Per request: dict lookups, attribute reads and identity
checks; what needs a walk over the application's routes is done once per route object and cached. Callers catch
every exception (nothing here may break a request), and neither framework is imported unless the application
loaded it.

The value is what FastAPI's native telemetry (on by default since FastAPI 0.165, scope ``fastapi``) calls the
request's ``http.route``, rebuilt from what routing leaves in the scope:

- **the matched route**: Starlette's router does ``scope["route"] = route`` on the scope it was given. Its template
  is ``path_format`` under a FastAPI application (``/files/{p}`` for ``/files/{p:path}``, as FastAPI writes it) and
  ``path`` under plain Starlette (as OpenTelemetry's Starlette instrumentation writes it).
- **a route of an included router** (``include_router(router, prefix="/api")``): since FastAPI 0.137
  ``scope["route"]`` is the route as declared, without the prefixes (fastapi#16051). FastAPI keeps the full template
  in ``scope["fastapi"]["effective_route_context"].path_format``, read when that context's ``original_route`` is the
  matched route; one router included under two prefixes has one context per prefix, so the scope tells which served
  the request. (Sentry's and Apitally's FastAPI integrations read the same key.)
- **a route of a mounted application** (``app.mount("/v1", sub)``, ``Mount("/v1", routes=[...])``): the scope names
  the inner route only, and its ``root_path`` has the *raw* mounted path (``/acme`` under ``/{tenant}``), never a
  template. The mount prefixes are found once per route object by walking the routes of the outermost router
  (``scope["router"]``, which Starlette's first router sets): FastAPI's prefix is the mount's ``path_format``
  without its ``/{path}`` tail. A route reachable through two mounts (an application mounted twice) is told apart by
  the raw ``root_path``: equal to a literal prefix, or matching a parametrised one (the only regular expression
  here, and only for such routes).
- **the root path** the server gives the application (uvicorn's or gunicorn's ``root_path``), which FastAPI puts in
  front of its routes: ``scope.get("app_root_path", scope.get("root_path", ""))``, as FastAPI reads it.

A Starlette older than ``scope["route"]`` leaves only ``scope["endpoint"]``: see :class:`_EndpointRoutes`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

#: route objects remembered (one per route of the application, as a rule); past it, new ones are not cached
_MAX_KNOWN = 10_000
#: composed templates remembered per route (its root paths times its prefixes, as a rule)
_MAX_COMPOSED = 64
#: how deep mounts nest before the walk stops (an application mounted inside itself)
_MAX_DEPTH = 8
#: the tail of a mount's ``path_format``
_MOUNT_TAIL = "/{path}"

#: routes by id: each with the mount prefixes it is reachable under
_Reached = dict[int, tuple[Any, list[str]]]


def starlette_route(scope: Any) -> str | None:
    """The route template of a request a Starlette or FastAPI application served, or None (no route matched)."""
    matched = scope.get("route")
    if matched is None:
        endpoint = scope.get("endpoint")
        return None if endpoint is None else _ENDPOINTS.route(scope, endpoint)
    # the request path: one function, dict lookups and attribute reads (Python calls cost more than all of them)
    known = _KNOWN.get(id(matched))
    if known is None or known.route is not matched:
        known = _ROUTES.learn(scope, matched)
    inner = known.own
    root = ""
    if known.fastapi:
        extra = scope.get("fastapi")
        if extra.__class__ is dict:
            context = extra.get("effective_route_context")
            if context is not None and getattr(context, "original_route", None) is matched:
                full = getattr(context, "path_format", None)
                if full.__class__ is str:
                    inner = full
        root = scope.get("app_root_path", scope.get("root_path", ""))
        if root.__class__ is not str:
            root = ""
    prefix = known.prefix
    if prefix is None:
        prefix = known.mount_prefix(scope)
    if inner is None or (not root and not prefix):
        return inner
    return known.compose(root, prefix, inner)


class _Prefix:
    """One mount prefix a route is reachable under, and how to recognise it in a raw ``root_path``."""

    __slots__ = ("pattern", "template")

    def __init__(self, template: str, pattern: Any) -> None:
        self.template = template
        #: a compiled regular expression when ``template`` has parameters (only built for an ambiguous route)
        self.pattern = pattern

    def matches(self, raw: str) -> bool:
        return raw == self.template if self.pattern is None else self.pattern.match(raw) is not None


class _Known:
    """What one route object needs per request: its own template, its mount prefixes, whether FastAPI's rules
    apply, and the templates composed from them."""

    __slots__ = ("ambiguous", "composed", "fastapi", "own", "prefix", "route")

    def __init__(self, route: Any, own: str | None, prefixes: list[str], fastapi: bool) -> None:
        self.route = route
        self.own = own
        self.fastapi = fastapi
        #: the one mount prefix ("" unmounted), or None when there are several (:attr:`ambiguous`)
        self.prefix: str | None = prefixes[0] if len(prefixes) == 1 else None
        self.ambiguous = [_Prefix(p, _pattern(p)) for p in prefixes] if self.prefix is None else []
        self.composed: dict[tuple[str, str, str], str] = {}

    def mount_prefix(self, scope: Any) -> str:
        """The prefix of this request, for a route reachable under several (:attr:`prefix` None)."""
        # Mount sets app_root_path to the root path it was given: what follows it in root_path is the raw path
        # the mounts matched; no Mount ran when it is absent
        base = scope.get("app_root_path")
        raw = "" if base is None else scope.get("root_path", "")[len(base) :]
        for prefix in self.ambiguous:
            if prefix.matches(raw):
                return prefix.template
        return ""  # none recognised: the inner template alone

    def compose(self, root: str, prefix: str, inner: str) -> str:
        key = (root, prefix, inner)
        found = self.composed.get(key)
        if found is None:
            found = root.rstrip("/") + prefix + inner
            if len(self.composed) < _MAX_COMPOSED:  # a root path that varies per request is not cached
                self.composed[key] = found
        return found


def _pattern(template: str) -> Any:
    if "{" not in template:
        return None
    from starlette.routing import compile_path  # only a Starlette application gets here

    return compile_path(template)[0]


class _Routes:
    """Learns route objects (:data:`_KNOWN`): the mount prefixes of every route the outermost router reaches."""

    def __init__(self) -> None:
        self._router: Any = None
        self._prefixes: _Reached = {}

    def learn(self, scope: Any, matched: Any) -> _Known:
        router = scope.get("router")
        fastapi = _is_fastapi(router)
        own = getattr(matched, "path_format" if fastapi else "path", None)
        prefixes = self._prefixes_of(router, matched, fastapi)
        known = _Known(matched, own if own.__class__ is str else None, prefixes, fastapi)
        if len(_KNOWN) < _MAX_KNOWN:
            _KNOWN[id(matched)] = known
        return known

    def _prefixes_of(self, router: Any, matched: Any, fastapi: bool) -> list[str]:
        if router is None:
            return [""]
        fresh = router is not self._router
        if fresh:
            self._prefixes, self._router = _mount_prefixes(router, fastapi), router
        found = self._prefixes.get(id(matched))
        if (found is None or found[0] is not matched) and not fresh and len(_KNOWN) < _MAX_KNOWN:
            self._prefixes = _mount_prefixes(router, fastapi)  # a route added since the walk
            found = self._prefixes.get(id(matched))
        if found is None or found[0] is not matched:
            return [""]  # not reachable from the outermost router: no mount we know of
        return found[1]


def _is_fastapi(router: Any) -> bool:
    api_router = getattr(sys.modules.get("fastapi.routing"), "APIRouter", None)
    return api_router is not None and isinstance(router, api_router)


def _mount_prefixes(router: Any, fastapi: bool) -> _Reached:
    """Every route the router reaches, by id: the route and the mount prefixes it is reachable under."""
    found: _Reached = {}
    _walk(getattr(router, "routes", None) or (), "", fastapi, found, 0)
    return found


def _walk(routes: Iterable[Any], prefix: str, fastapi: bool, found: _Reached, depth: int) -> None:
    for route in _expanded(routes, fastapi):
        children = _children(route)
        if children is not None:
            if depth < _MAX_DEPTH:
                _walk(children, prefix + _own_prefix(route, fastapi), fastapi, found, depth + 1)
            continue
        original = getattr(route, "original_route", route)  # FastAPI's RouteContext: the route as declared
        entry = found.setdefault(id(original), (original, []))
        if prefix not in entry[1]:
            entry[1].append(prefix)


def _expanded(routes: Iterable[Any], fastapi: bool) -> Iterable[Any]:
    """``routes`` with FastAPI's included routers (0.137+, ``_IncludedRouter``) expanded into their routes."""
    expand = getattr(sys.modules.get("fastapi.routing"), "iter_route_contexts", None) if fastapi else None
    return expand(list(routes)) if expand is not None else routes


def _children(route: Any) -> Any:
    """The routes under a mount or host (None for a route that serves requests itself), looking through middleware
    around a mounted application."""
    routes = getattr(route, "routes", None)
    if routes is None:
        return None
    app = getattr(route, "app", None)
    for _depth in range(4):
        if routes:
            return routes
        routes, app = getattr(app, "routes", None), getattr(app, "app", None)
    return routes or ()


def _own_prefix(route: Any, fastapi: bool) -> str:
    """What a mount adds to its routes' template ("" for a host)."""
    path_format = getattr(route, "path_format", None)
    if not isinstance(path_format, str) or not path_format.endswith(_MOUNT_TAIL):
        return ""
    if fastapi:
        return path_format[: -len(_MOUNT_TAIL)]
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else path_format[: -len(_MOUNT_TAIL)]


#: route objects seen so far, by id (checked by identity: an id is reused once its object is gone)
_KNOWN: dict[int, _Known] = {}
_ROUTES = _Routes()


# ---------------------------------------------------------------- a Starlette that leaves only the endpoint

#: applications remembered by :class:`_EndpointRoutes` (a worker serves one, and its mounted ones)
_MAX_APPS = 16


class _EndpointRoutes:
    """Route templates of an older Starlette application by endpoint, built once per application; endpoints serving
    several paths are matched as the router does."""

    def __init__(self) -> None:
        self._by_app: dict[int, tuple[Any, dict[Any, str | None]]] = {}

    def route(self, scope: Any, endpoint: Any) -> str | None:
        app = scope.get("app")
        if app is None:
            return None
        held = self._by_app.get(id(app))
        if held is None or held[0] is not app:
            held = (app, _routes_by_endpoint(app))
            if len(self._by_app) < _MAX_APPS:
                self._by_app[id(app)] = held
        try:
            template = held[1].get(endpoint, "")
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


_ENDPOINTS = _EndpointRoutes()
