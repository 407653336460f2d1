"""``http.route``: where each framework keeps its template, the bound on distinct routes, the metric and the span."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from otel_gunicorn import _instruments as inst
from otel_gunicorn._config import Config, ConfigError
from otel_gunicorn._worker import routes
from otel_gunicorn._worker.app_boundary import ASGIRequests, WSGIRequests
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.requests import RequestObserver
from otel_gunicorn._worker.tracing import RequestTracing
from tests.unit.records import Records

BOUNDS = (0.05, 0.5, 1.0)


def flask_app() -> Flask:
    app = Flask(__name__)
    assert "flask" == routes.install(app)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return str(item_id)

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


async def _ok(_request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }


def call_wsgi(app: Any, path: str) -> dict[str, Any]:
    """Call ``app`` for ``GET path`` as a server does; return the environ afterwards."""
    env = environ(path)
    result = app(env, lambda status, headers, exc_info=None: None)
    for _chunk in result:
        pass
    getattr(result, "close", lambda: None)()
    return env


def call_asgi(app: Any, path: str, root_path: str = "") -> dict[str, Any]:
    """Call ``app`` for ``GET path`` (which includes ``root_path``, as ASGI has it); return the scope afterwards."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))
    return scope


def duration_routes(stats: RequestStats) -> dict[Any, int]:
    """Requests by ``http.route`` (None: none) in the statistics' duration histogram."""
    counted: dict[Any, int] = {}
    for key, value in stats.snapshot()[inst.REQUEST_DURATION.meta].items():
        route = dict(key).get("http.route")
        counted[route] = counted.get(route, 0) + value.count  # type: ignore[union-attr]
    return counted


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def observer(spans: InMemorySpanExporter) -> Iterator[RequestObserver]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield RequestObserver(RequestStats(BOUNDS), 0, RequestTracing(provider))


def test_flask_route_is_the_url_rule_template() -> None:
    """A Flask request's route is its url_rule's template, read from werkzeug's request in the environ."""
    assert "/items/<int:item_id>" == routes.wsgi_route(call_wsgi(flask_app(), "/items/7"))


def test_a_flask_404_has_no_route() -> None:
    """A path no Flask rule matched has no route."""
    assert None is routes.wsgi_route(call_wsgi(flask_app(), "/nowhere"))


def test_the_manual_key_wins_in_an_environ() -> None:
    """The documented environ key names the route by hand, over what the framework says."""
    env = call_wsgi(flask_app(), "/health")
    env[routes.ROUTE_KEY] = "/custom/{name}"
    assert "/custom/{name}" == routes.wsgi_route(env)


def test_fastapi_route_is_the_scope_route_path() -> None:
    """A FastAPI request's route is the path of the route its router put in the scope."""
    assert "/items/{item_id}" == routes.asgi_route(call_asgi(fastapi_app(), "/items/7"))


def test_a_fastapi_404_has_no_route() -> None:
    """A path no FastAPI route matched has no route."""
    assert None is routes.asgi_route(call_asgi(fastapi_app(), "/nowhere"))


def test_plain_starlette_route() -> None:
    """A plain Starlette application's route is its Route's path."""
    app = Starlette(routes=[Route("/users/{name}", _ok)])
    assert "/users/{name}" == routes.asgi_route(call_asgi(app, "/users/ada"))


def test_a_starlette_without_scope_route_is_found_by_endpoint() -> None:
    """A Starlette that leaves only the endpoint in the scope gets its route from the application's routes."""
    app = SimpleNamespace(routes=[Route("/a/{x}", _ok), Route("/b", PlainTextResponse)])
    assert "/a/{x}" == routes.asgi_route({"app": app, "endpoint": _ok, "type": "http", "path": "/a/1"})


def test_an_endpoint_serving_two_paths_is_matched_as_the_router_does() -> None:
    """One endpoint on two routes: the route whose pattern matches the request."""
    app = SimpleNamespace(routes=[Route("/a/{x}", _ok), Route("/b/{y}", _ok)])
    scope = {"app": app, "endpoint": _ok, "type": "http", "path": "/b/2", "method": "GET", "root_path": ""}
    assert "/b/{y}" == routes.asgi_route(scope)


def test_the_wsgi_wrapper_records_the_route_on_metric_and_span(
    observer: RequestObserver, spans: InMemorySpanExporter
) -> None:
    """Through the WSGI wrapper, the duration carries http.route and the span is named METHOD route."""
    app = WSGIRequests(flask_app(), observer)
    for path in ("/items/1", "/items/2", "/health", "/nowhere"):
        call_wsgi(app, path)
    assert {"/items/<int:item_id>": 2, "/health": 1, None: 1} == duration_routes(observer._stats)  # type: ignore[arg-type]
    names = sorted(span.name for span in spans.get_finished_spans())
    assert ["GET", "GET /health", "GET /items/<int:item_id>", "GET /items/<int:item_id>"] == names


def test_the_asgi_wrapper_records_the_route(observer: RequestObserver, spans: InMemorySpanExporter) -> None:
    """Through the ASGI wrapper, the duration and the span carry the FastAPI route template."""
    app = ASGIRequests(fastapi_app(), observer)
    call_asgi(app, "/items/3")
    assert {"/items/{item_id}": 1} == duration_routes(observer._stats)  # type: ignore[arg-type]
    (span,) = spans.get_finished_spans()
    assert ("GET /items/{item_id}", "/items/{item_id}") == (span.name, (span.attributes or {})["http.route"])


def test_the_hook_path_reads_the_route_from_post_requests_environ(observer: RequestObserver) -> None:
    """``post_request``'s environ gives the route to a request seen through the hooks."""
    req = SimpleNamespace(method="GET", headers=[], version=(1, 1), scheme="http", path="/x", query="")
    observer.started(req)
    observer.finished(req, {routes.ROUTE_KEY: "/x/{id}"}, SimpleNamespace(status_code=200))
    assert {"/x/{id}": 1} == duration_routes(observer._stats)  # type: ignore[arg-type]


def test_the_asgi_capture_hands_the_route_to_post_request() -> None:
    """gunicorn's asgi worker: the capture around the application leaves the route for post_request."""

    async def served() -> str | None:
        scope = {"type": "http", "route": SimpleNamespace(path="/items/{item_id}")}

        async def app(_scope: Any, _receive: Any, _send: Any) -> None:
            pass

        await routes.ASGIRouteCapture(app)(scope, None, None)  # type: ignore[arg-type]
        return routes.captured_asgi_route()

    assert "/items/{item_id}" == asyncio.run(served())


def test_routes_past_the_bound_fold_into_one_value_counted_and_logged_once() -> None:
    """Past OTEL_GUNICORN_MAX_ROUTES, new routes become _OTHER, each such request counted, one warning."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None), routes.RouteBound(2))
    handler = Records()
    logger = logging.getLogger("otel_gunicorn")
    logger.addHandler(handler)
    try:
        for route in ("/a", "/b", "/c", "/d", "/a", "/c"):
            req = SimpleNamespace(method="GET", headers=[], version=(1, 1), scheme="http")
            observer.started(req)
            observer.finished(req, {routes.ROUTE_KEY: route}, SimpleNamespace(status_code=200))
    finally:
        logger.removeHandler(handler)
    assert {"/a": 2, "/b": 1, "_OTHER": 3} == duration_routes(stats)
    assert {(): 3} == stats.snapshot()[inst.ROUTES_OVERFLOW.meta]
    assert 1 == sum("OTEL_GUNICORN_MAX_ROUTES" in message for _level, message in handler.messages)


def test_max_routes_is_read_from_the_environment() -> None:
    """OTEL_GUNICORN_MAX_ROUTES sets the bound; unset, it is 500."""
    assert (500, 20) == (
        Config.from_env({}).max_routes,
        Config.from_env({"OTEL_GUNICORN_MAX_ROUTES": "20"}).max_routes,
    )


def test_a_bad_max_routes_fails_with_one_line_naming_it() -> None:
    """A bad OTEL_GUNICORN_MAX_ROUTES names the variable, the value and what is accepted."""
    with pytest.raises(ConfigError) as info:
        Config.from_env({"OTEL_GUNICORN_MAX_ROUTES": "0"})
    assert "OTEL_GUNICORN_MAX_ROUTES='0' is not valid: expected an integer from 1 to 100000" == str(info.value)


# ---------------------------------------------------------------- mounts and included routers, as FastAPI names them


def fastapi_zoo(provider: TracerProvider) -> FastAPI:
    """One FastAPI application with each way FastAPI composes a route: included routers (nested, and one included
    under two prefixes), a path convertor, a mounted FastAPI application with a router of its own (mounted twice, once
    under a parameter), a mounted application inside a middleware."""
    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    deep = APIRouter(prefix="/deep")

    @deep.get("/{d}")
    def deeper(d: int) -> dict[str, int]:
        return {"d": d}

    items.include_router(deep)
    sub = FastAPI()

    @sub.get("/items/{item_id}")
    def sub_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    sub_router = APIRouter()

    @sub_router.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    sub.include_router(sub_router, prefix="/shop")
    app = FastAPI(telemetry={"tracer_provider": provider})

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/files/{file_path:path}")
    def files(file_path: str) -> str:
        return file_path

    app.include_router(items, prefix="/api")
    app.include_router(items, prefix="/api2")
    app.mount("/v1", sub)
    app.mount("/{tenant}/t", sub)
    wrapped = FastAPI()

    @wrapped.get("/deep/{x}")
    def deep_x(x: int) -> int:
        return x

    app.mount("/wrapped", GZipMiddleware(wrapped))
    return app


ZOO_PATHS = [
    "/health",
    "/files/a/b.txt",
    "/api/items/7",
    "/api2/items/7",
    "/api/items/deep/3",
    "/v1/items/5",
    "/v1/shop/orders/9",
    "/acme/t/items/5",
    "/acme/t/shop/orders/9",
    "/wrapped/deep/4",
    "/nowhere",
]


@pytest.mark.parametrize("root_path", ["", "/prefix"])
def test_fastapi_routes_agree_with_fastapis_own_telemetry(root_path: str) -> None:
    """For every way FastAPI composes a route (included routers, mounts, a root path), the route read from the
    scope is the http.route of FastAPI's own SERVER span for the same request."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = fastapi_zoo(provider)
    ours, theirs = {}, {}
    for path in ZOO_PATHS:
        scope = call_asgi(app, root_path + path, root_path)
        ours[path] = routes.asgi_route(scope)
        [server] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        theirs[path] = (server.attributes or {}).get("http.route")
        exporter.clear()
    assert theirs == ours
    assert root_path + "/v1/shop/orders/{order_id}" == ours["/v1/shop/orders/9"]
    assert root_path + "/{tenant}/t/items/{item_id}" == ours["/acme/t/items/5"]


def test_a_starlette_mount_prefixes_its_routes() -> None:
    """A plain Starlette application's mounted routes carry the mount's path before their own."""
    inner = [Route("/items/{item_id:int}", _ok)]
    app = Starlette(routes=[Route("/health", _ok), Mount("/v1", routes=inner), Mount("/{tenant}", routes=inner)])
    assert ["/health", "/v1/items/{item_id:int}", "/{tenant}/items/{item_id:int}"] == [
        routes.asgi_route(call_asgi(app, path)) for path in ("/health", "/v1/items/3", "/acme/items/3")
    ]
