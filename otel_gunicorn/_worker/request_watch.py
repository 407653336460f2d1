"""Stuck and slow requests: one log line each, with the stack of the code serving it and its trace ids.

Runs in a worker. Three moments, one line per request in flight each time, all built by :class:`RequestWatch`:

- **slow** (``OTEL_GUNICORN_SLOW_REQUEST_SECONDS``): :meth:`RequestWatch.tick`, on the worker's reporting thread (a
  greenlet under gevent) at each report, finds the requests running longer than the threshold and logs each once,
  while it still runs. ``gunicorn.requests.slow`` is kept apart from the lines, exactly: :class:`RequestStats` counts
  every request that took at least the threshold when it ends, also one that began and ended between two ticks
  (which had no line: a request running longer than the threshold plus one report interval always has one).
- **timeout**: gunicorn's arbiter aborts a worker that missed ``--timeout`` (SIGABRT); :meth:`RequestWatch.timed_out`
  runs in ``worker_abort``, on the main thread inside gunicorn's signal handler, before the worker dies. With tracing
  on, each request's span also gets an ``exception`` event with the stack. gunicorn's own "Error handling request"
  traceback of the same request (the sync worker's, which has no trace id left) is held back, so one line per request
  carries both stack and ids.
- **graceful stop**: the worker notes when SIGTERM arrives (:meth:`RequestWatch.stopping`, an attribute store in the
  signal handler); the tick before the graceful timeout runs out logs the requests still running, which the stop is
  about to cut off.

Nothing here runs per request: the request core records, when a request begins, only what it already kept plus the
context serving it (:attr:`RequestObserver.serving`). Everything is read from the registry of requests in flight,
a copy taken in one C call. Never raises: a line that cannot be written is given up, rate-limited in the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._request_ids import ids_of
from otel_gunicorn._worker.requests import InFlight, RequestObserver
from otel_gunicorn._worker.routes import ROUTE_KEY
from otel_gunicorn._worker.stacks import CONTROL, StackReader, handler_interrupted
from otel_gunicorn._worker.tracing import RequestTracing

_log = logging.getLogger("otel_gunicorn")

#: ``reason`` of each line
SLOW, TIMEOUT, GRACEFUL_TIMEOUT = "slow", "timeout", "graceful_timeout"
_EVENTS = {
    SLOW: "slow request",
    TIMEOUT: "request cut off by the worker timeout",
    GRACEFUL_TIMEOUT: "request still running as the graceful timeout expires",
}
_LEVELS = {SLOW: logging.WARNING, TIMEOUT: logging.ERROR, GRACEFUL_TIMEOUT: logging.ERROR}
#: how long before the graceful timeout runs out, at the least, the still-running requests are logged
_GRACEFUL_MARGIN = 1.0
#: characters of a request's path shown in its line
MAX_PATH = 512


class RequestWatch:
    """The stack lines of one worker's requests.

    Args:
        observer: the worker's request core, whose registry of requests in flight is read.
        slow_after: ``OTEL_GUNICORN_SLOW_REQUEST_SECONDS``, or None (no slow check).
        graceful_timeout: gunicorn's ``--graceful-timeout`` of this worker (None: no graceful-stop lines).
        tick_interval: seconds between two :meth:`tick` calls (the report interval).
        main_thread: the worker's main thread's ident.
        clock: the request core's clock (``time.perf_counter``), which times the requests.
        monotonic: the clock of the graceful stop.
    """

    def __init__(
        self,
        observer: RequestObserver,
        *,
        slow_after: float | None,
        graceful_timeout: float | None,
        tick_interval: float,
        main_thread: int,
        clock: Callable[[], float] = time.perf_counter,
        monotonic: Callable[[], float] = time.monotonic,
        log: logging.Logger = _log,
    ) -> None:
        self._observer = observer
        self._slow_after = slow_after
        self._graceful_timeout = graceful_timeout
        self._tick_interval = tick_interval
        self._stacks = StackReader(main_thread)
        self._clock = clock
        self._monotonic = monotonic
        self._log = log
        self._errors = RateLimitedLogger(log)
        #: requests logged as slow: id of the request object -> its start, which tells a later request that got
        #: the same id apart
        self._reported: dict[int, float] = {}
        #: when SIGTERM arrived (``monotonic``), and whether the graceful-stop lines are written
        self._stop_at: float | None = None
        self._graceful_logged = False

    # ---------------------------------------------------------------- the report tick

    def tick(self) -> None:
        """At each report: the requests slow since the last one, then, during a graceful stop about to expire, those
        still running. Never raises."""
        try:
            in_flight = self._observer.in_flight()
            if self._slow_after is not None:
                self._slow(in_flight)
            self._graceful(in_flight)
        except Exception as exc:  # noqa: BLE001 - the report must go on
            self._errors.log(logging.WARNING, "tick", "otel_gunicorn: checking slow requests failed: %r", exc)

    def _slow(self, in_flight: list[InFlight]) -> None:
        assert self._slow_after is not None
        now = self._clock()
        reported = {}
        for entry in in_flight:
            ident, started = id(entry[5]), entry[0]
            if self._reported.get(ident) == started:
                reported[ident] = started  # logged already, still running
            elif now - started >= self._slow_after:
                reported[ident] = started
                self._line(SLOW, entry, now, self._slow_after)
        self._reported = reported  # requests that ended are forgotten

    def stopping(self) -> None:
        """SIGTERM arrived (called in the signal handler: one attribute store)."""
        if self._stop_at is None:
            self._stop_at = self._monotonic()

    def _graceful(self, in_flight: list[InFlight]) -> None:
        stop_at, timeout = self._stop_at, self._graceful_timeout
        if stop_at is None or timeout is None or self._graceful_logged:
            return
        left = stop_at + timeout - self._monotonic()
        # The next tick could come after the timeout: this is the last chance before the cut.
        if left > self._tick_interval + min(_GRACEFUL_MARGIN, timeout / 4):
            return
        self._graceful_logged = True
        now = self._clock()
        for entry in in_flight:
            self._line(GRACEFUL_TIMEOUT, entry, now, timeout)

    # ---------------------------------------------------------------- the abort

    def timed_out(self, timeout: float | None) -> int:
        """``worker_abort``: a line for every request in flight, an ``exception`` event on its span; gunicorn's own
        traceback of the same requests held back. Returns how many lines were written. Never raises."""
        try:
            interrupted = handler_interrupted(sys._getframe())
            now = self._clock()
            written = 0
            for entry in self._observer.in_flight():
                stack = self._line(TIMEOUT, entry, now, timeout, interrupted)
                written += 1
                message = f"the worker timeout cut the request off after {now - entry[0]:.3f} s"
                RequestTracing.timed_out(entry[3], message, stack)
            if written:
                hold_back_abort_tracebacks()
            return written
        except Exception as exc:  # noqa: BLE001 - the worker is dying: never in a way of ours
            self._errors.log(logging.WARNING, "abort", "otel_gunicorn: logging timed-out requests failed: %r", exc)
            return 0

    # ---------------------------------------------------------------- the line

    def _line(
        self, reason: str, entry: InFlight, now: float, limit: float | None, interrupted: FrameType | None = None
    ) -> str:
        """Log one request's line; return its stack as a traceback's text (empty when it could not be read). A
        request whose line fails is skipped, said once a minute: the others still get theirs."""
        try:
            return self._write(reason, entry, now, limit, interrupted)
        except Exception as exc:  # noqa: BLE001 - one odd request must not cost the others their lines
            self._errors.log(logging.WARNING, "line", "otel_gunicorn: a stuck-request line failed: %r", exc)
            return ""

    def _write(
        self, reason: str, entry: InFlight, now: float, limit: float | None, interrupted: FrameType | None
    ) -> str:
        _started, _key, method, span, _token, request, serving, ids = entry
        stack = self._stacks.read(serving, interrupted)
        path, route = _target(request)
        elapsed = round(now - entry[0], 3)
        fields: dict[str, Any] = {"reason": reason, "method": method, "path": path}
        if route is not None:
            fields["route"] = route
        fields["elapsed"] = elapsed
        if limit is not None:
            fields["limit"] = limit
        fields.update(_trace_fields(span, ids))
        where = "?"
        if stack is not None:
            fields["stack"] = list(stack.frames)
            fields["stack_of"] = stack.of
            if stack.omitted:
                fields["stack_omitted"] = stack.omitted
            where = stack.innermost
        self._log.log(
            _LEVELS[reason], "%s: %s %s after %.3f s in %s", _EVENTS[reason], method, path, elapsed, where, extra=fields
        )
        return stack.traceback() if stack is not None else ""


def _target(request: Any) -> tuple[str | None, str | None]:
    """The path of a request object (gunicorn's request, a WSGI environ or an ASGI scope) and its route when the
    framework has told it by now; never the query string, which may carry credentials. Shown as text: control
    characters (a decoded ``%0A``) replaced, at most :data:`MAX_PATH` characters."""
    path, route = _raw_target(request)
    return (None if path is None else path[:MAX_PATH].translate(CONTROL)), route


def _raw_target(request: Any) -> tuple[str | None, str | None]:
    path: object
    route: object
    if isinstance(request, dict):
        if "REQUEST_METHOD" in request:  # a WSGI environ
            path = f"{request.get('SCRIPT_NAME', '')}{request.get('PATH_INFO', '')}"
            route = request.get(ROUTE_KEY)
        else:  # an ASGI scope: the route, once Starlette's router matched one
            path = request.get("path")
            route = request.get(ROUTE_KEY) or getattr(request.get("route"), "path", None)
        return (path if isinstance(path, str) else None), (route if isinstance(route, str) else None)
    path = getattr(request, "path", None)
    return (path if isinstance(path, str) else None), None


def _trace_fields(span: Any, ids: list[tuple[int, int] | None] | None) -> dict[str, str]:
    """The request's ``trace_id``, ``span_id`` and ``trace_flags``: its span's (tracing on, or the caller's with
    tracing off), else its own log ids, as its other log lines carry them."""
    if span is not None:
        context = span.get_span_context()
        if context.is_valid:
            return {
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
                "trace_flags": format(context.trace_flags, "02x"),
            }
    if ids is not None:
        trace_id, span_id = ids_of(ids)
        return {"trace_id": format(trace_id, "032x"), "span_id": format(span_id, "016x"), "trace_flags": "00"}
    return {}


class _AbortTracebacks(logging.Filter):
    """Drops gunicorn's "Error handling request" traceback of a request an abort cut off (its exception is the
    abort's ``SystemExit``): that request has its line already, with the trace ids gunicorn's has lost by then."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, SystemExit) and str(record.msg).startswith("Error handling request"))


def hold_back_abort_tracebacks() -> None:
    """Keep gunicorn's own traceback of the aborted requests out of its error log (once per process)."""
    logger = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, _AbortTracebacks) for f in logger.filters):
        logger.addFilter(_AbortTracebacks())


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread of its own: the slow-request check of a worker
    without metrics, which has no report to run on. Started after the fork (``post_worker_init``); a greenlet under
    gevent."""

    def __init__(self, tick: Callable[[], None], interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(tick, interval), name="otel-gunicorn-request-watch", daemon=True
        )
        self._thread.start()

    def _run(self, tick: Callable[[], None], interval: float) -> None:
        while not self._stop.wait(interval):
            tick()

    def stop(self) -> None:
        self._stop.set()
