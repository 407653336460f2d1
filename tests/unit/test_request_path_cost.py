"""The cheap request path keeps its promises: the registry of requests in flight, the header scan's fast path, the
inlined request-ids marking, the ASGI ``send`` without a frame of ours, and ``OTEL_METRICS_EXEMPLAR_FILTER``."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

from otel_gunicorn import _instruments as inst
from otel_gunicorn import _request_ids
from otel_gunicorn._worker.app_boundary import ASGIRequests, WSGIRequests
from otel_gunicorn._worker.queue_time import scan_asgi_headers, scan_headers
from otel_gunicorn._worker.reporter import exemplar_filter
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.requests import TIMEOUT_ERROR, RequestObserver
from otel_gunicorn._worker.tracing import GUNICORN_REQUEST, RequestTracing
from tests.unit.fake_requests import Req, Resp

BOUNDS = (0.1, 0.5, 1.0)
GET = (("gunicorn.worker.slot", 0), ("http.request.method", "GET"))


@pytest.fixture(autouse=True)
def _no_request_left_marked() -> Iterator[None]:
    """Requests a test leaves unfinished leave their log-ids mark in the test thread's context: put back what was
    there, for later tests (test_logs)."""
    token = _request_ids.VAR.set(None)
    yield
    _request_ids.VAR.reset(token)


def _own_context(test: Any) -> Any:
    """Run ``test`` in a fresh context: requests it leaves unfinished leave their marks there, not in later tests."""

    def run() -> None:
        contextvars.Context().run(test)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def _observer(stats: RequestStats | None = None) -> RequestObserver:
    return RequestObserver(stats, 0, RequestTracing(None))


# ---------------------------------------------------------------- the registry of requests in flight


def test_requests_in_flight_are_counted_from_the_registry_and_their_key_stays_at_zero():
    stats = RequestStats(BOUNDS)
    observer = _observer(stats)
    first, second = Req(), Req()
    observer.started(first)
    observer.started(second)
    assert ({GET: 2}, 2) == (stats.snapshot()[inst.ACTIVE_REQUESTS.meta], len(stats.in_flight))
    observer.finished(first, {}, Resp())
    observer.finished(second, {}, Resp())
    assert ({GET: 0}, {}) == (stats.snapshot()[inst.ACTIVE_REQUESTS.meta], stats.in_flight)


@_own_context
def test_registered_and_counted_requests_add_up():
    """A request counted with started() and one registered by the core are both in flight."""
    stats = RequestStats(BOUNDS)
    stats.started(GET, 1.0)
    _observer(stats).started(Req())
    assert {GET: 2} == stats.snapshot()[inst.ACTIVE_REQUESTS.meta]


def test_a_request_ended_twice_is_recorded_once():
    stats = RequestStats(BOUNDS)
    observer = _observer(stats)
    req = Req()
    entry = observer.begin("GET", False, None, req, GUNICORN_REQUEST)
    assert observer.end(entry, 200, (1, 1), "http")
    assert not observer.end(entry, 200, (1, 1), "http")
    observer.detach(entry)
    [point] = stats.snapshot()[inst.REQUEST_DURATION.meta].values()
    assert 1 == point.count


@_own_context
def test_a_request_finished_while_abandoned_is_recorded_once():
    """An aborted gthread worker exits while a pool thread may still reach post_request: one record, either way."""
    stats = RequestStats(BOUNDS)
    observer = _observer(stats)
    reqs = [Req() for _ in range(50)]
    for req in reqs:
        observer.started(req)
    observer.abort()
    finishing = threading.Thread(target=lambda: [observer.finished(req, {}, Resp()) for req in reqs])
    finishing.start()
    abandoned = observer.abandon_in_flight()
    finishing.join()
    points = stats.snapshot()[inst.REQUEST_DURATION.meta]
    assert 50 == sum(point.count for point in points.values())
    assert abandoned == sum(p.count for k, p in points.items() if ("error.type", TIMEOUT_ERROR) in k)
    assert {GET: 0} == stats.snapshot()[inst.ACTIVE_REQUESTS.meta]


def test_busy_seconds_include_registered_requests():
    stats = RequestStats(BOUNDS)
    stats.in_flight[1] = (10.0, GET, "GET", None)  # as requests.InFlight: start, key, method, span
    stats.started(GET, 20.0)
    assert pytest.approx(50.0 + 40.0) == stats.busy_seconds(60.0)
    assert stats.closed(1, GET, 5.0)
    assert pytest.approx(5.0 + 40.0) == stats.busy_seconds(60.0)


def test_without_metrics_the_core_keeps_its_own_registry():
    """Metrics off: a finished request leaves the core's own registry, and the one still running is what an abort
    finds there."""
    observer = _observer(None)
    finished, running = Req(), Req()
    observer.started(finished)
    observer.started(running)
    observer.finished(finished, {}, Resp())
    observer.abort()
    assert 1 == observer.abandon_in_flight()


def test_a_wsgi_request_leaves_the_registry_when_its_body_is_closed():
    stats = RequestStats(BOUNDS)

    def app(environ: dict, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    result = WSGIRequests(app, _observer(stats))({"REQUEST_METHOD": "GET"}, lambda *args: None)
    assert 1 == len(stats.in_flight)
    result.close()
    assert ({}, {GET: 0}) == (stats.in_flight, stats.snapshot()[inst.ACTIVE_REQUESTS.meta])


# ---------------------------------------------------------------- the header scans


def test_the_header_scan_reads_the_headers_again_only_when_one_is_there():
    assert (False, None) == scan_headers([("HOST", "x"), ("ACCEPT", "*/*")])
    assert (True, "t=1") == scan_headers([("HOST", "x"), ("TRACEPARENT", "00-"), ("X-QUEUE-START", "t=1")])
    assert (False, None) == scan_asgi_headers([(b"host", b"x")])
    assert (True, "t=2") == scan_asgi_headers(((b"traceparent", b"00-"), (b"x-request-start", b"t=2")))


def test_a_header_name_that_cannot_be_hashed_is_still_read():
    """An ASGI server handing bytearray names: the fast path's set lookup fails, the long way compares."""
    assert (True, None) == scan_asgi_headers([(bytearray(b"host"), b"x"), (bytearray(b"traceparent"), b"00-")])
    assert (False, None) == scan_headers([(["HOST"], "x")])


# ---------------------------------------------------------------- the request ids, inlined


def test_a_spanless_request_has_ids_while_it_runs_and_none_after():
    observer = _observer(RequestStats(BOUNDS))
    req = Req()

    def serve() -> tuple[object, object, object]:
        before = _request_ids.current_ids()
        observer.started(req)
        during = _request_ids.current_ids()
        observer.finished(req, {}, Resp())
        return before, during, _request_ids.current_ids()

    before, during, after = contextvars.Context().run(serve)  # a thread's fresh context, as a worker thread has
    assert (None, True, None) == (before, during is not None, after)


def test_a_request_ended_in_another_context_forgets_its_ids_there():
    """A server that ends a request in a copy of the context it began in: no ValueError, no ids left behind."""
    stats = RequestStats(BOUNDS)
    observer = _observer(stats)
    req = Req()
    observer.started(req)
    contextvars.copy_context().run(observer.finished, req, {}, Resp())
    _request_ids.end(_request_ids.begin())  # this context's own mark still works
    assert 1 == sum(p.count for p in stats.snapshot()[inst.REQUEST_DURATION.meta].values())


# ---------------------------------------------------------------- the ASGI send


def test_asgi_send_hands_back_the_servers_awaitable_but_for_the_last_message():
    stats = RequestStats(BOUNDS)
    sent: list[dict] = []
    seen: dict[str, Any] = {}

    async def server_send(message: dict) -> None:
        sent.append(message)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        first = send({"type": "http.response.start", "status": 200})
        seen["first"] = first
        await first
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        last = send({"type": "http.response.body", "body": b"b"})
        seen["last"] = last
        assert 1 == len(stats.in_flight), "in flight until the server took the last bytes"
        await last

    scope = {"type": "http", "method": "GET", "headers": [], "http_version": "1.1", "scheme": "http"}
    asyncio.run(ASGIRequests(app, _observer(stats))(scope, None, server_send))
    assert 3 == len(sent) and {} == stats.in_flight
    assert seen["first"].__qualname__.endswith(".server_send") and seen["last"].__qualname__.endswith("._send_last")
    [key] = stats.snapshot()[inst.REQUEST_DURATION.meta]
    assert ("http.response.status_code", 200) in key


# ---------------------------------------------------------------- OTEL_METRICS_EXEMPLAR_FILTER


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, TraceBasedExemplarFilter),
        ("", TraceBasedExemplarFilter),
        ("trace_based", TraceBasedExemplarFilter),
        ("ALWAYS_OFF", AlwaysOffExemplarFilter),
        (" always_on ", AlwaysOnExemplarFilter),
    ],
)
def test_the_exemplar_filter_follows_the_variable(value: str | None, expected: type) -> None:
    environ = {} if value is None else {"OTEL_METRICS_EXEMPLAR_FILTER": value}
    assert type(exemplar_filter(environ)) is expected


def test_an_unknown_exemplar_filter_is_the_default_without_a_word_from_the_worker(logged):
    """The arbiter warned when it read its configuration (tests/unit/test_config.py): no worker repeats it."""
    chosen = exemplar_filter({"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"})
    assert (TraceBasedExemplarFilter, []) == (type(chosen), logged.messages)


# ---------------------------------------------------------------- gunicorn's asgi worker request


class ByteHeadersReq:
    """Like gunicorn's asgi CallbackRequest: ``headers_bytes`` as ASGI has them, ``headers`` built when read."""

    __slots__ = ("headers_bytes", "headers_read")
    method = "GET"
    scheme = "http"
    version = (1, 1)
    path = "/items"
    query = ""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.headers_bytes = headers
        self.headers_read = False

    @property
    def headers(self) -> list[tuple[str, str]]:
        self.headers_read = True
        return [(k.decode().upper(), v.decode()) for k, v in self.headers_bytes]


@_own_context
def test_the_asgi_workers_request_is_read_through_its_bytes():
    """Reading ``headers`` would make gunicorn build a str copy of every header, then re-scan it for keep-alive."""
    stats = RequestStats(BOUNDS)
    observer = _observer(stats)
    req = ByteHeadersReq([(b"host", b"x"), (b"x-request-start", b"t=1")])
    observer.started(req)
    observer.finished(req, {}, None)
    assert not req.headers_read
    assert {(): 1} == stats.snapshot()[inst.QUEUE_HEADER_INVALID.meta], "t=1 was found (and is decades old)"


def test_the_asgi_workers_request_continues_the_callers_trace():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = RequestObserver(RequestStats(BOUNDS), 0, RequestTracing(provider))
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    req = ByteHeadersReq([(b"traceparent", parent.encode()), (b"user-agent", b"curl/8")])
    observer.started(req)
    observer.finished(req, {}, None)
    [span] = exporter.get_finished_spans()
    assert not req.headers_read
    assert (0x0AF7651916CD43DD8448EB211C80319C, "curl/8", "/items") == (
        span.context.trace_id,
        span.attributes["user_agent.original"],
        span.attributes["url.path"],
    )


def test_the_request_hooks_are_pinned_on_the_workers_configuration() -> None:
    """gunicorn's ``cfg.pre_request`` then resolves without ``Config.__getattr__``; the value is the setting's own."""
    from gunicorn.config import Config

    from otel_gunicorn import hooks
    from otel_gunicorn._worker.runtime import _pin_request_hooks

    cfg = Config()
    cfg.set("pre_request", hooks.pre_request)
    cfg.set("post_request", hooks.post_request)

    class Worker:
        pass

    worker = Worker()
    worker.cfg = cfg  # type: ignore[attr-defined]
    _pin_request_hooks(worker)

    assert vars(cfg)["pre_request"] is cfg.settings["pre_request"].get() is hooks.pre_request
    assert vars(cfg)["post_request"] is cfg.settings["post_request"].get() is hooks.post_request
    assert "workers" not in vars(cfg)  # nothing else pinned


# ---------------------------------------------------------------- the stack lines: what a request pays for them


def _calls(observer: RequestObserver) -> list[str]:
    """The functions a request calls, Python's and C's, from ``pre_request`` through ``post_request``."""
    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen.append(frame.f_code.co_name)
        elif event == "c_call":
            seen.append(arg.__name__)

    def serve() -> None:
        req = Req()
        sys.setprofile(profile)
        try:
            observer.started(req)
            observer.finished(req, {}, Resp())
        finally:
            sys.setprofile(None)

    contextvars.Context().run(serve)
    return [name for name in seen if name != "setprofile"]


def test_the_slow_request_check_adds_no_call_to_a_request() -> None:
    """OTEL_GUNICORN_SLOW_REQUEST_SECONDS set or not, a request makes the same calls: the check reads the registry
    of requests in flight on the reporting thread; a request pays one test of an empty set when it ends."""
    from otel_gunicorn._worker.request_watch import RequestWatch

    plain = _observer(RequestStats(BOUNDS))
    watched = _observer(RequestStats(BOUNDS))
    RequestWatch(watched, slow_after=1.0, graceful_timeout=30.0, tick_interval=5.0, main_thread=0)
    assert _calls(plain) == _calls(watched)


def test_telling_the_serving_thread_apart_costs_one_c_call_and_sync_none() -> None:
    """Where requests are served on threads, greenlets or tasks, a request's start records which with one C call
    (``threading.get_ident`` here); sync, one request at a time on the main thread, records nothing."""
    sync = _observer(RequestStats(BOUNDS))
    threaded = _observer(RequestStats(BOUNDS))
    threaded.serving = threading.get_ident
    sync_calls, threaded_calls = _calls(sync), _calls(threaded)
    assert ["get_ident"] == [name for name in threaded_calls if name not in sync_calls]
    assert len(sync_calls) + 1 == len(threaded_calls)
    threaded.started(Req())
    assert threading.get_ident() == threaded.in_flight()[0][6]
