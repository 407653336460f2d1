"""Request metrics and spans measured around the application (WSGI and ASGI wrappers), compared with the hook path."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator, MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tornado.web import Application
from tornado.wsgi import WSGIContainer
from uvicorn.config import Config as UvicornConfig
from uvicorn.server import Server

from otel_gunicorn import _instruments as inst
from otel_gunicorn._snapshot import AttrValue, HistogramValue, Value
from otel_gunicorn._worker.app_boundary import ASGIRequests, WSGIRequests, install
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.requests import RequestObserver, protocol_version
from otel_gunicorn._worker.state import WorkerStateReader
from otel_gunicorn._worker.state.asgi import ASGIReader
from otel_gunicorn._worker.state.gevent import GeventPyWSGIReader, GeventReader
from otel_gunicorn._worker.state.gthread import ThreadWorkerReader
from otel_gunicorn._worker.state.sync import SyncReader
from otel_gunicorn._worker.state.tornado import TornadoReader
from otel_gunicorn._worker.state.uvicorn import UvicornReader
from otel_gunicorn._worker.tracing import RequestTracing
from tests.unit.records import Records

BOUNDS = (0.05, 0.5, 1.0)
SLOT = 3
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture(autouse=True)
def context_restored() -> Iterator[None]:
    """Every request in these tests ends, so each path must leave the context as it found it."""
    before = context.get_current()
    yield
    assert before == context.get_current()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def observer(stats: RequestStats | None, exporter: InMemorySpanExporter | None = None) -> RequestObserver:
    provider = None
    if exporter is not None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return RequestObserver(stats, SLOT, RequestTracing(provider))


# One request, as each path sees it: POST /items?page=2 over HTTP/1.1 from 10.0.0.7, with a traceparent.


def gunicorn_request(method: str = "POST") -> SimpleNamespace:
    headers = [("USER-AGENT", "curl/8"), ("TRACEPARENT", TRACEPARENT)]
    return SimpleNamespace(
        method=method,
        headers=headers,
        version=(1, 1),
        scheme="http",
        path="/items",
        query="page=2",
        peer_addr=("10.0.0.7", 51000),
    )


def environ(method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": method,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "RAW_URI": "/items?page=2",
        "PATH_INFO": "/items",
        "QUERY_STRING": "page=2",
        "REMOTE_ADDR": "10.0.0.7",
        "HTTP_USER_AGENT": "curl/8",
        "HTTP_TRACEPARENT": TRACEPARENT,
        **extra,
    }


def scope(method: str = "POST", headers: list | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "http_version": "1.1",
        "scheme": "http",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"page=2",
        "client": ("10.0.0.7", 51000),
        "headers": [(b"user-agent", b"curl/8"), (b"traceparent", TRACEPARENT.encode())] + (headers or []),
    }


def wsgi_app(status: str = "201 Created", body: Any = (b"ok",)) -> Any:
    def app(environ: dict, start_response: Any) -> Any:
        start_response(status, [("Content-Length", "2")])
        return body

    return app


def asgi_app(status: int = 201) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def ignore(message: dict) -> None:
    pass


async def nothing() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve_wsgi(app: Any, env: dict[str, Any]) -> list[bytes]:
    """What a WSGI server does: call, iterate, close."""
    result = app(env, lambda status, headers, exc_info=None: None)
    try:
        return list(result)
    finally:
        result.close()


def serve_asgi(app: Any, the_scope: dict[str, Any]) -> None:
    asyncio.run(app(the_scope, nothing, ignore))


def through_hooks(obs: RequestObserver, status: int = 201) -> None:
    req = gunicorn_request()
    obs.started(req)
    obs.finished(req, {}, SimpleNamespace(status_code=status))


def histogram(value: Value) -> HistogramValue:
    """A point of a histogram (the request duration's)."""
    assert isinstance(value, HistogramValue)
    return value


def recorded(stats: RequestStats) -> tuple[dict, list]:
    """(active requests by key, duration keys with their counts) of a snapshot."""
    snapshot = stats.snapshot()
    durations = snapshot.get(inst.REQUEST_DURATION.meta, {})
    return snapshot.get(inst.ACTIVE_REQUESTS.meta, {}), sorted((k, histogram(v).count) for k, v in durations.items())


def hook_path_record() -> tuple[dict, list]:
    stats = RequestStats(BOUNDS)
    through_hooks(observer(stats))
    return recorded(stats)


def durations(stats: RequestStats) -> list[float]:
    return [histogram(v).sum for v in stats.snapshot()[inst.REQUEST_DURATION.meta].values()]


def statuses(stats: RequestStats) -> list[AttrValue | None]:
    return [dict(k).get("http.response.status_code") for k in stats.snapshot()[inst.REQUEST_DURATION.meta]]


# Same metrics as the hook path


def test_wsgi_request_is_recorded_exactly_as_the_hook_path_records_it():
    """One WSGI request yields the hook path's active-requests and duration points, attribute for attribute."""
    stats = RequestStats(BOUNDS)
    serve_wsgi(WSGIRequests(wsgi_app(), observer(stats)), environ())
    assert hook_path_record() == recorded(stats)


def test_asgi_request_is_recorded_exactly_as_the_hook_path_records_it():
    """One ASGI request yields the hook path's active-requests and duration points, attribute for attribute."""
    stats = RequestStats(BOUNDS)
    serve_asgi(ASGIRequests(asgi_app(), observer(stats)), scope())
    assert hook_path_record() == recorded(stats)


def test_unknown_methods_are_folded_into_other_on_every_path():
    """A method semantic conventions do not name is _OTHER through the hooks, the WSGI and the ASGI wrapper."""
    keys = []

    def hooks(obs: RequestObserver) -> None:
        req = gunicorn_request("BREW")
        obs.started(req)
        obs.finished(req, {}, None)

    for run in (
        hooks,
        lambda obs: serve_wsgi(WSGIRequests(wsgi_app(), obs), environ("BREW")),
        lambda obs: serve_asgi(ASGIRequests(asgi_app(), obs), scope("BREW")),
    ):
        stats = RequestStats(BOUNDS)
        run(observer(stats))
        keys.append(list(stats.snapshot()[inst.ACTIVE_REQUESTS.meta]))
    assert [[((inst.SLOT_ATTRIBUTE, SLOT), ("http.request.method", "_OTHER"))]] * 3 == keys


def test_queue_start_header_is_recorded_on_both_wrappers():
    """X-Request-Start is read from the environ and from the scope into the queue-time histogram."""
    started = f"t={int((time.time() - 0.2) * 1_000_000)}"
    wsgi_stats, asgi_stats = RequestStats(BOUNDS), RequestStats(BOUNDS)
    serve_wsgi(WSGIRequests(wsgi_app(), observer(wsgi_stats)), environ(HTTP_X_REQUEST_START=started))
    asgi = ASGIRequests(asgi_app(), observer(asgi_stats))
    serve_asgi(asgi, scope(headers=[(b"x-request-start", started.encode())]))
    waits = [s.snapshot()[inst.QUEUE_DURATION.meta][()] for s in (wsgi_stats, asgi_stats)]
    assert [(1, 1), (1, 1)] == [(w.count, w.counts[1]) for w in waits]  # one wait, in the (0.05, 0.5] bucket


@pytest.mark.parametrize(
    ("version", "expected"),
    [((1, 1), "1.1"), ((2, 0), "2"), ("HTTP/1.0", "1.0"), ("HTTP/2", "2"), ("1.1", "1.1"), ("2", "2"), ("3", "3")],
)
def test_protocol_version_reads_every_paths_form(version: object, expected: str):
    """gunicorn's tuple, WSGI's SERVER_PROTOCOL and ASGI's http_version give the same network.protocol.version."""
    assert expected == protocol_version(version)


@pytest.mark.parametrize("version", ["HTTP/x", "", "junk", None, (1,), ("1", "1")])
def test_an_unreadable_protocol_version_is_left_out(version: object):
    """A version that cannot be read is no attribute rather than a made-up one."""
    assert protocol_version(version) is None


# Same span as the hook path


def span_view(span: Any) -> tuple:
    return (
        span.name,
        span.kind,
        dict(span.attributes),
        span.status.status_code,
        format(span.context.trace_id, "032x"),
        format(span.parent.span_id, "016x"),
    )


def test_every_path_makes_the_same_server_span(spans: InMemorySpanExporter):
    """The hooks, the WSGI and the ASGI wrapper continue the caller's trace with one identical server span."""
    through_hooks(observer(None, spans))
    serve_wsgi(WSGIRequests(wsgi_app(), observer(None, spans)), environ())
    serve_asgi(ASGIRequests(asgi_app(), observer(None, spans)), scope())
    hook, wsgi, asgi = (span_view(s) for s in spans.get_finished_spans())
    assert (hook, hook) == (wsgi, asgi)
    assert (TRACE_ID, PARENT_ID) == hook[4:]


def test_a_5xx_marks_the_span_as_an_error_on_every_path(spans: InMemorySpanExporter):
    """A 503 answer is an error span with error.type 503 through the hooks and both wrappers."""
    through_hooks(observer(None, spans), status=503)
    serve_wsgi(WSGIRequests(wsgi_app("503 Service Unavailable"), observer(None, spans)), environ())
    serve_asgi(ASGIRequests(asgi_app(503), observer(None, spans)), scope())
    views = [(s.status.status_code.name, (s.attributes or {})["error.type"]) for s in spans.get_finished_spans()]
    assert [("ERROR", "503")] * 3 == views


# The end of the response


def test_wsgi_request_stays_in_flight_until_the_body_is_closed():
    """The request counts as active while the server still holds its body, and not after close()."""
    stats = RequestStats(BOUNDS)
    key = ((inst.SLOT_ATTRIBUTE, SLOT), ("http.request.method", "POST"))
    body = WSGIRequests(wsgi_app(body=iter([b"o", b"k"])), observer(stats))(environ(), lambda *a: None)
    list(body)
    during = dict(stats.snapshot()[inst.ACTIVE_REQUESTS.meta])
    body.close()
    assert ({key: 1}, {key: 0}) == (during, stats.snapshot()[inst.ACTIVE_REQUESTS.meta])


def test_wsgi_duration_runs_until_close_for_a_streamed_body():
    """A streamed body that takes 60 ms between chunks is inside the recorded duration."""
    stats = RequestStats(BOUNDS)

    def chunks() -> Iterator[bytes]:
        yield b"o"
        time.sleep(0.06)
        yield b"k"

    serve_wsgi(WSGIRequests(wsgi_app(body=chunks()), observer(stats)), environ())
    [seconds] = durations(stats)
    assert 0.06 <= seconds < 1.0


def test_asgi_duration_ends_with_the_final_body_not_the_background_work():
    """A streamed ASGI body (60 ms between parts) is inside the duration; 300 ms of work after it is not."""
    stats = RequestStats(BOUNDS)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"o", "more_body": True})
        await asyncio.sleep(0.06)
        await send({"type": "http.response.body", "body": b"k"})
        await asyncio.sleep(0.3)  # a background task after the response

    serve_asgi(ASGIRequests(app, observer(stats)), scope())
    [seconds] = durations(stats)
    assert 0.06 <= seconds < 0.3


def test_asgi_response_without_a_final_body_ends_when_the_app_returns():
    """An application that never sends more_body=False is recorded when it returns."""
    stats = RequestStats(BOUNDS)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})

    serve_asgi(ASGIRequests(app, observer(stats)), scope())
    assert [204] == statuses(stats)


def test_wsgi_sized_body_keeps_its_length():
    """A list body still has a length (gevent's pywsgi derives Content-Length from it); a generator has none."""
    app = WSGIRequests(wsgi_app(body=[b"o", b"k"]), observer(RequestStats(BOUNDS)))
    sized = app(environ(), lambda *a: None)
    sized.close()
    streamed = WSGIRequests(wsgi_app(body=iter([b"ok"])), observer(RequestStats(BOUNDS)))(environ(), lambda *a: None)
    streamed.close()
    assert (2, [b"o", b"k"], False) == (len(sized), list(sized), hasattr(streamed, "__len__"))


def test_wsgi_closes_the_applications_body_once_and_records_once():
    """close() reaches the application's iterable once; a second close() records nothing more."""
    stats = RequestStats(BOUNDS)
    closed = []

    class Body(list):
        def close(self) -> None:
            closed.append(True)

    body = WSGIRequests(wsgi_app(body=Body([b"ok"])), observer(stats))(environ(), lambda *a: None)
    body.close()
    body.close()
    assert ([True, True], [1]) == (closed, [v.count for v in stats.snapshot()[inst.REQUEST_DURATION.meta].values()])


# Exceptions


def test_wsgi_exception_counts_as_500_and_propagates_unchanged():
    """An application raising when called is recorded as 500, and the very same exception reaches the server."""
    stats = RequestStats(BOUNDS)
    error = ValueError("boom")

    def app(environ: dict, start_response: Any) -> Any:
        raise error

    with pytest.raises(ValueError) as raised:
        WSGIRequests(app, observer(stats))(environ(), lambda *a: None)
    assert (error, [500]) == (raised.value, statuses(stats))


def test_wsgi_exception_while_streaming_counts_as_500():
    """A body generator raising mid-stream is recorded as 500 and the exception propagates."""
    stats = RequestStats(BOUNDS)

    def chunks() -> Iterator[bytes]:
        yield b"o"
        raise RuntimeError("broken stream")

    with pytest.raises(RuntimeError, match="broken stream"):
        serve_wsgi(WSGIRequests(wsgi_app("200 OK", chunks()), observer(stats)), environ())
    assert [500] == statuses(stats)


def test_asgi_exception_counts_as_500_and_propagates_unchanged():
    """An ASGI application raising before its response ends is recorded as 500; the exception is re-raised."""
    stats = RequestStats(BOUNDS)
    error = ValueError("boom")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise error

    with pytest.raises(ValueError) as raised:
        serve_asgi(ASGIRequests(app, observer(stats)), scope())
    assert (error, [500]) == (raised.value, statuses(stats))


# Never twice, never breaking a request


def test_wsgi_application_wrapped_twice_is_counted_once():
    """Two wrappers around one application record one request."""
    stats = RequestStats(BOUNDS)
    obs = observer(stats)
    serve_wsgi(WSGIRequests(WSGIRequests(wsgi_app(), obs), obs), environ())
    assert [1] == [v.count for v in stats.snapshot()[inst.REQUEST_DURATION.meta].values()]


def test_asgi_application_wrapped_twice_is_counted_once():
    """Two wrappers around one ASGI application record one request."""
    stats = RequestStats(BOUNDS)
    obs = observer(stats)
    serve_asgi(ASGIRequests(ASGIRequests(asgi_app(), obs), obs), scope())
    assert [1] == [v.count for v in stats.snapshot()[inst.REQUEST_DURATION.meta].values()]


class BrokenMapping(dict):
    """An environ or scope whose every read fails."""

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("unreadable")

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("unreadable")


def test_broken_environ_still_reaches_the_application(logged: Records):
    """An environ that cannot be read is passed to the application as it is; the request is not measured."""
    stats = RequestStats(BOUNDS)
    broken = BrokenMapping()
    seen = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        seen.append(environ)
        return [b"ok"]

    result = WSGIRequests(app, observer(stats))(broken, lambda *a: None)
    expected_log = [
        (logging.WARNING, "otel_gunicorn: WSGI request telemetry failed (start): RuntimeError('unreadable')")
    ]
    assert ([broken], [b"ok"], {}, expected_log) == (seen, result, stats.snapshot(), logged.messages)


def test_broken_scope_still_reaches_the_application(logged: Records):
    """A scope that cannot be read is passed to the ASGI application as it is; the request is not measured."""
    stats = RequestStats(BOUNDS)
    broken = BrokenMapping()
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    serve_asgi(ASGIRequests(app, observer(stats)), broken)
    expected_log = [
        (logging.WARNING, "otel_gunicorn: ASGI request telemetry failed (start): RuntimeError('unreadable')")
    ]
    assert ([broken], {}, expected_log) == (seen, stats.snapshot(), logged.messages)


def test_an_environ_missing_every_key_is_counted_as_other():
    """An environ with none of the usual keys is still measured: method _OTHER, no version, scheme or status."""
    stats = RequestStats(BOUNDS)

    def app(environ: dict, start_response: Any) -> list[bytes]:
        return []

    serve_wsgi(WSGIRequests(app, observer(stats)), {})
    assert [((("http.request.method", "_OTHER"),), 1)] == recorded(stats)[1]


def test_a_strange_message_from_the_application_does_not_break_its_response(logged: Records):
    """A message without a type still reaches the server; telemetry logs and records the request at return."""
    stats = RequestStats(BOUNDS)
    sent = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"no": "type"})

    async def server_send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(ASGIRequests(app, observer(stats))(scope(), nothing, server_send))
    assert ([{"no": "type"}], [None]) == (sent, statuses(stats))


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_non_http_scopes_pass_through_untouched(kind: str):
    """lifespan and websocket scopes reach the application with the server's own receive and send, unmarked."""
    stats = RequestStats(BOUNDS)
    the_scope = {"type": kind}
    seen = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    serve_asgi(ASGIRequests(app, observer(stats)), the_scope)
    assert ([(the_scope, nothing, ignore)], {"type": kind}, {}) == (seen, the_scope, stats.snapshot())


# Choosing what to wrap


def test_install_wraps_the_workers_application_for_its_interface():
    """install() replaces worker.wsgi with the wrapper of the interface the reader named."""
    obs = observer(None)
    wsgi_worker, asgi_worker = SimpleNamespace(wsgi=wsgi_app()), SimpleNamespace(wsgi=asgi_app())
    assert (True, True) == (install(wsgi_worker, obs, "wsgi"), install(asgi_worker, obs, "asgi"))
    assert (WSGIRequests, ASGIRequests) == (type(wsgi_worker.wsgi), type(asgi_worker.wsgi))


def test_install_leaves_the_application_alone_without_an_interface():
    """No interface (a hook-driven class, or an application that cannot be wrapped): worker.wsgi is unchanged."""
    app = wsgi_app()
    worker = SimpleNamespace(wsgi=app)
    assert (False, app) == (install(worker, observer(None), None), worker.wsgi)


@pytest.mark.parametrize("reader_class", [WorkerStateReader, SyncReader, ThreadWorkerReader, GeventReader, ASGIReader])
def test_classes_measured_through_the_hooks_wrap_nothing(reader_class: type):
    """Where gunicorn calls pre/post_request, the application is never wrapped: a request is never counted twice."""
    reader = reader_class(SimpleNamespace(wsgi=wsgi_app()))
    assert (True, None) == (reader.requests_via_hooks, reader.app_interface())


def test_gevent_pywsgi_wraps_its_wsgi_application():
    """gevent's pywsgi calls no hooks, so its WSGI application is wrapped."""
    reader = GeventPyWSGIReader(SimpleNamespace(wsgi=wsgi_app()))
    assert (False, "wsgi") == (reader.requests_via_hooks, reader.app_interface())


@pytest.mark.parametrize(
    ("app", "expected"),
    [(wsgi_app(), "wsgi"), (Application(), None), (WSGIContainer(wsgi_app()), None)],
    ids=["wsgi", "tornado-application", "wsgi-container"],
)
def test_tornado_wraps_only_a_plain_wsgi_application(app: Any, expected: str | None):
    """A WSGI callable is wrapped; a tornado Application or a ready-made WSGIContainer is left alone."""
    assert expected == TornadoReader(SimpleNamespace(wsgi=app)).app_interface()


class ASGI2App:
    def __init__(self, scope: dict) -> None:
        self.scope = scope


class ASGI3Object:
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("app", "interface", "expected"),
    [
        (asgi_app(), "auto", "asgi"),
        (ASGI3Object(), "auto", "asgi"),
        (asgi_app(), "asgi3", "asgi"),
        (ASGI2App, "auto", None),
        (wsgi_app(), "auto", None),
        (asgi_app(), "wsgi", None),
        (asgi_app(), "asgi2", None),
    ],
)
def test_uvicorn_wraps_only_what_it_will_call_as_asgi3(app: Any, interface: str, expected: str | None):
    """uvicorn's own interface rule decides: ASGI 3 applications are wrapped, ASGI 2 / WSGI / factories are not."""
    worker = SimpleNamespace(wsgi=app, config=SimpleNamespace(interface=interface))
    assert expected == UvicornReader(worker).app_interface()


def test_a_wrapped_asgi_application_is_still_asgi3_to_uvicorn():
    """uvicorn loads the wrapper as an ASGI 3 application, so it calls it as before."""
    config = UvicornConfig(app=ASGIRequests(asgi_app(), observer(None)), proxy_headers=False, lifespan="off")
    config.load()
    assert "asgi3" == config.interface


# uvicorn's open connections


def test_uvicorn_open_connections_come_from_the_serving_server():
    """While a uvicorn Server serves, its SIGTERM handler is its handle_exit: its connections are counted."""
    server = Server(UvicornConfig(app=asgi_app()))
    server.server_state.connections.update({"c1", "c2"})
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        assert 2 == UvicornReader(SimpleNamespace()).active_connections()
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_uvicorn_open_connections_absent_when_no_server_serves():
    """A SIGTERM handler that is not a uvicorn Server's leaves open connections absent, not 0."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        assert UvicornReader(SimpleNamespace()).active_connections() is None
    finally:
        signal.signal(signal.SIGTERM, previous)
