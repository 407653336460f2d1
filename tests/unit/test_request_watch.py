"""The stack lines of slow, timed-out and cut-off requests: one per request and moment, with its stack and trace ids,
and ``gunicorn.requests.slow`` counting the slow ones when they end."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from harness.waiting import wait_until
from otel_gunicorn import _instruments as inst
from otel_gunicorn import _request_ids
from otel_gunicorn._gunicorn_log import record_formatter
from otel_gunicorn._snapshot import HistogramValue
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.request_watch import RequestWatch, Ticker
from otel_gunicorn._worker.requests import RequestObserver
from otel_gunicorn._worker.tracing import RequestTracing
from tests.unit.fake_requests import Req, Resp

BOUNDS = (0.1, 1.0)
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SAMPLED = f"00-{TRACE}-{PARENT}-01"


class Captured(logging.Handler):
    """Keeps the records themselves: their fields are the point."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, reason: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "reason", None) == reason]


class Clock:
    """``time.perf_counter`` (the request core's clock, which dates the requests) moved ahead at will."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.perf_counter() + self.ahead


class Path(Req):
    def __init__(self, path: str = "/slow", headers: list[tuple[str, str]] | None = None) -> None:
        self.path = path
        self.query = "token=secret"
        self.headers = headers or []


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("tests.request_watch")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def parked() -> Iterator[int]:
    """A thread parked in ``serving_in_here``, standing in for the worker's main thread that serves the requests."""
    ready, release = threading.Event(), threading.Event()

    def serving_in_here() -> None:
        ready.set()
        release.wait(10)

    thread = threading.Thread(target=serving_in_here, daemon=True)
    thread.start()
    assert ready.wait(10) and thread.ident is not None
    yield thread.ident
    release.set()
    thread.join(10)


@pytest.fixture(autouse=True)
def _fresh_context() -> Iterator[None]:
    """Requests a test leaves in flight leave their marks in the test's own context, not in later tests."""
    token = _request_ids.VAR.set(None)
    yield
    _request_ids.VAR.reset(token)


def watch_of(
    observer: RequestObserver,
    main: int,
    clock: Any = time.perf_counter,
    slow_after: float | None = 1.0,
    **kwargs: Any,
) -> RequestWatch:
    settings: dict[str, Any] = {"graceful_timeout": None, "tick_interval": 1.0, **kwargs}
    return RequestWatch(
        observer,
        slow_after=slow_after,
        main_thread=main,
        clock=clock,
        log=logging.getLogger("tests.request_watch"),
        **settings,
    )


# ---------------------------------------------------------------- slow requests


def test_a_request_past_the_threshold_gets_one_line_while_it_runs(captured: Captured, parked: int) -> None:
    observer = RequestObserver(RequestStats(BOUNDS), 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)
    observer.started(Path())
    watch.tick()
    assert [] == captured.lines("slow"), "not slow yet"
    clock.ahead = 1.5
    watch.tick()
    watch.tick()
    [line] = captured.lines("slow")
    assert ("GET", "/slow", 1.0, "thread") == (line.method, line.path, line.limit, line.stack_of)  # type: ignore[attr-defined]
    assert line.elapsed >= 1.5  # type: ignore[attr-defined]
    assert any(f.endswith(".serving_in_here") for f in line.stack)  # type: ignore[attr-defined]
    assert "token=secret" not in line.getMessage() + json.dumps(vars(line), default=str), "never the query string"
    assert line.getMessage().startswith("slow request: GET /slow after 1.5")
    assert line.getMessage().endswith(".serving_in_here"), "the innermost frame of our own code, not threading's wait"


def test_every_request_that_took_the_threshold_counts_when_it_ends_with_its_durations_attributes() -> None:
    """Also one that began and ended between two checks (no line): the counter is exact, the lines are sampled."""
    stats = RequestStats(BOUNDS)
    stats.slow_after = 1.0
    key = (("http.request.method", "GET"),)
    for ident, seconds in enumerate((2.5, 0.2, 1.0, 0.999)):
        stats.in_flight[ident] = (0.0, key, "GET", None, None, None, None, None)
        assert stats.closed(ident, key, seconds)
    snapshot = stats.snapshot()
    assert {key: 2} == snapshot[inst.SLOW_REQUESTS.meta]
    durations = snapshot[inst.REQUEST_DURATION.meta][key]
    assert isinstance(durations, HistogramValue)
    assert 4 == sum(durations.counts), "every request recorded, slow or not"


def test_no_threshold_counts_nothing() -> None:
    """Unset (the default), no request is slow, however long it took: the family is absent."""
    stats = RequestStats(BOUNDS)
    key = (("http.request.method", "GET"),)
    stats.in_flight[1] = (0.0, key, "GET", None, None, None, None, None)
    assert stats.closed(1, key, 3600.0)
    assert inst.SLOW_REQUESTS.meta not in stats.snapshot()


def test_a_request_object_served_again_is_a_new_request(captured: Captured, parked: int) -> None:
    """gunicorn may reuse an object (and CPython an id): the start time tells the requests apart."""
    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)
    req = Path()
    for _ in range(2):
        observer.started(req)
        clock.ahead += 5.0
        watch.tick()
        observer.finished(req, {}, Resp())
    assert 2 == len(captured.lines("slow"))


def test_a_spanless_requests_line_carries_the_ids_of_its_other_lines(captured: Captured, parked: int) -> None:
    """Tracing off, no traceparent: the request's own log ids, as the application's lines for it carry them."""
    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)

    def serve() -> tuple[int, int] | None:
        observer.started(Path())
        return _request_ids.current_ids()  # what the request's first log line gets

    ids = contextvars.Context().run(serve)
    assert ids is not None
    clock.ahead = 2.0
    watch.tick()
    [line] = captured.lines("slow")
    expected = (format(ids[0], "032x"), format(ids[1], "016x"), "00")
    assert expected == (line.trace_id, line.span_id, line.trace_flags)  # type: ignore[attr-defined]


def test_with_tracing_off_the_line_carries_the_callers_trace(captured: Captured, parked: int) -> None:
    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)
    contextvars.Context().run(observer.started, Path(headers=[("TRACEPARENT", SAMPLED)]))
    clock.ahead = 2.0
    watch.tick()
    [line] = captured.lines("slow")
    assert (TRACE, PARENT, "01") == (line.trace_id, line.span_id, line.trace_flags)  # type: ignore[attr-defined]


def test_no_threshold_no_slow_line(captured: Captured, parked: int) -> None:
    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock, slow_after=None)
    observer.started(Path())
    clock.ahead = 1000.0
    watch.tick()
    assert [] == captured.records


def test_the_line_is_one_json_line_with_the_stack_as_a_list(captured: Captured, parked: int) -> None:
    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)
    observer.started(Path("/a\nb"))
    clock.ahead = 2.0
    watch.tick()
    [record] = captured.records
    rendered = record_formatter("json").format(record)
    assert 1 == len(rendered.splitlines())
    line = json.loads(rendered)
    assert ("slow", "/a?b", "thread") == (line["reason"], line["path"], line["stack_of"])
    assert isinstance(line["stack"], list) and any(f.endswith(".serving_in_here") for f in line["stack"])
    assert "\n" not in record.getMessage(), "a decoded %0A in the path breaks no line"


def test_a_failing_check_never_raises_into_the_report(logged: Any) -> None:
    class Broken(RequestObserver):
        def in_flight(self) -> Any:
            raise RuntimeError("boom")

    watch = RequestWatch(
        Broken(None, 0, RequestTracing(None)), slow_after=1.0, graceful_timeout=None, tick_interval=1.0,
        main_thread=0,
    )  # fmt: skip
    watch.tick()
    assert any("checking slow requests failed" in message for _level, message in logged.messages)


def test_a_request_whose_line_fails_costs_the_others_nothing(captured: Captured, parked: int) -> None:
    class Odd(Req):
        @property
        def path(self) -> str:
            raise RuntimeError("an odd request object")

    observer = RequestObserver(None, 0, RequestTracing(None))
    clock = Clock()
    watch = watch_of(observer, parked, clock)
    for req in (Odd(), Path("/fine")):
        contextvars.Context().run(observer.started, req)
    clock.ahead = 2.0
    watch.tick()
    assert ["/fine"] == [line.path for line in captured.lines("slow")]  # type: ignore[attr-defined]
    assert any("a stuck-request line failed" in r.getMessage() for r in captured.records)


# ---------------------------------------------------------------- the timeout abort


def handle_abort(watch: RequestWatch) -> int:
    """Named as gunicorn's SIGABRT handler: the stack read is what it interrupted."""
    return watch.timed_out(2.0)


def stuck_in_here(watch: RequestWatch) -> int:
    return handle_abort(watch)


@pytest.fixture
def gunicorn_error_log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("gunicorn.error")
    filters = list(logger.filters)
    yield logger
    logger.filters[:] = filters


def test_the_abort_logs_each_request_with_its_stack_and_an_exception_event(
    captured: Captured, gunicorn_error_log: logging.Logger
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = RequestObserver(RequestStats(BOUNDS), 0, RequestTracing(provider))
    observer.serving = threading.get_ident
    req = Path("/stuck", headers=[("TRACEPARENT", SAMPLED)])

    def serve() -> int:
        observer.started(req)
        watch = watch_of(observer, threading.get_ident())
        written = stuck_in_here(watch)
        observer.abort()
        try:
            raise SystemExit(1)  # what gunicorn's handler raises next, through the request
        except SystemExit:
            observer.finished(req, {}, None)
        return written

    assert 1 == contextvars.Context().run(serve)
    [line] = captured.lines("timeout")
    assert (logging.ERROR, 2.0, TRACE) == (line.levelno, line.limit, line.trace_id)  # type: ignore[attr-defined]
    assert line.stack[-1].endswith(" stuck_in_here")  # type: ignore[attr-defined]
    [span] = exporter.get_finished_spans()
    [event] = span.events
    event_attributes, span_attributes = dict(event.attributes or {}), dict(span.attributes or {})
    assert ("exception", "TimeoutError") == (event.name, event_attributes["exception.type"])
    assert "stuck_in_here" in str(event_attributes["exception.stacktrace"])
    assert (StatusCode.ERROR, "timeout") == (span.status.status_code, span_attributes["error.type"])


def test_gunicorns_own_traceback_of_an_aborted_request_is_held_back(
    captured: Captured, gunicorn_error_log: logging.Logger
) -> None:
    """One line per stuck request: gunicorn's "Error handling request", logged after the context is gone, is not."""
    observer = RequestObserver(None, 0, RequestTracing(None))
    contextvars.Context().run(observer.started, Path())
    watch_of(observer, threading.get_ident()).timed_out(2.0)
    kept = Captured()
    gunicorn_error_log.addHandler(kept)
    try:
        try:
            raise SystemExit(1)
        except SystemExit:
            gunicorn_error_log.exception("Error handling request %s %s", "GET", "/stuck")
            gunicorn_error_log.exception("Error handling request (no URI read)")
        try:
            raise ValueError("the application's own error")
        except ValueError:
            gunicorn_error_log.exception("Error handling request %s %s", "GET", "/other")
        gunicorn_error_log.error("WORKER TIMEOUT (pid:1)")
    finally:
        gunicorn_error_log.removeHandler(kept)
    assert ["Error handling request GET /other", "WORKER TIMEOUT (pid:1)"] == [r.getMessage() for r in kept.records]


def test_no_request_in_flight_no_line_and_gunicorns_log_untouched(gunicorn_error_log: logging.Logger) -> None:
    observer = RequestObserver(None, 0, RequestTracing(None))
    assert 0 == watch_of(observer, 0).timed_out(2.0)
    assert gunicorn_error_log.filters == [f for f in gunicorn_error_log.filters if "Abort" not in type(f).__name__]


# ---------------------------------------------------------------- the graceful stop


def test_requests_still_running_as_the_graceful_timeout_expires_get_their_line(captured: Captured, parked: int) -> None:
    """SIGTERM at 0, graceful timeout 10 s, reports every 1 s: the last report that surely comes before the cut
    (less than a report and a margin before it) logs the requests still running, once."""
    now = [100.0]
    observer = RequestObserver(None, 0, RequestTracing(None))
    watch = watch_of(observer, parked, graceful_timeout=10.0, monotonic=lambda: now[0], slow_after=None)
    observer.started(Path("/long"))
    watch.tick()
    watch.stopping()
    for at, logged in ((107.5, 0), (108.1, 1), (108.9, 1), (109.5, 1)):
        now[0] = at
        watch.tick()
        assert logged == len(captured.lines("graceful_timeout")), at
    [line] = captured.lines("graceful_timeout")
    assert (logging.ERROR, "/long", 10.0) == (line.levelno, line.path, line.limit)  # type: ignore[attr-defined]


def test_a_second_sigterm_does_not_move_the_deadline() -> None:
    now = [0.0]
    observer = RequestObserver(None, 0, RequestTracing(None))
    watch = watch_of(observer, 0, graceful_timeout=10.0, monotonic=lambda: now[0])
    watch.stopping()
    now[0] = 5.0
    watch.stopping()
    assert 0.0 == watch._stop_at


# ---------------------------------------------------------------- without metrics: a thread of its own


def test_without_a_report_the_check_ticks_on_a_thread_of_its_own() -> None:
    ticks: list[float] = []
    ticker = Ticker(lambda: ticks.append(time.monotonic()), 0.01)
    try:
        wait_until(lambda: len(ticks), 5, what="three ticks", until=lambda n: n >= 3)
    finally:
        ticker.stop()
    assert all(b > a for a, b in zip(ticks, ticks[1:]))
