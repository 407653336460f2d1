"""Request metrics and spans: one core, fed by gunicorn's request hooks or by a wrapper around the application.

Runs in a worker, on the thread, greenlet or event loop serving the request, so it must be cheap and must never
raise into the request. Two paths feed :class:`RequestObserver`, and each request takes exactly one of them:

- **the hooks** (sync, gthread, gevent, asgi): ``pre_request`` → :meth:`RequestObserver.started`, ``post_request`` →
  :meth:`RequestObserver.finished`. ``post_request`` runs after the body is sent, so a streamed body is inside the
  measured time.
- **the application boundary** (gevent_pywsgi, tornado, uvicorn-worker, which never call the hooks): the WSGI or
  ASGI wrapper in :mod:`otel_gunicorn._worker.app_boundary` reads the same few fields from the environ or scope and
  calls :meth:`RequestObserver.begin` / :meth:`RequestObserver.end` itself.

Both paths hand the core the same fields (method, whether a ``traceparent`` came, the queue-start header, the
protocol version, the scheme, the status), so a request yields the same metric points and the same span whichever
path saw it.

Hook path: request objects differ by worker class (the asgi worker's has ``__slots__``), so in-flight state is kept
here, keyed by the request object's id, rather than on the request.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextvars import Token as _Token
from typing import Any

from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_SCHEME

from otel_gunicorn import _request_ids
from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._responses import status_code
from otel_gunicorn._snapshot import AttrKey
from otel_gunicorn._worker.queue_time import InvalidHeader, scan_asgi_headers, scan_headers, wait_seconds
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.routes import ROUTE_KEY, RouteBound, captured_asgi_route
from otel_gunicorn._worker.tracing import GUNICORN_REQUEST, GunicornRequest, RequestTracing, SpanSource

_log = logging.getLogger("otel_gunicorn")

#: methods semantic conventions name; anything else is reported as _OTHER to keep cardinality bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
#: bound on cached attribute keys (a client could send any status-producing request; the cache must not grow); room
#: for every route of an application at the default ``OTEL_GUNICORN_MAX_ROUTES`` with a few statuses each
_MAX_CACHED_KEYS = 4096
#: ``OTEL_GUNICORN_MAX_ROUTES``' default, for an observer built without a bound of its own (tests, benchmarks)
DEFAULT_MAX_ROUTES = 500

#: ``error.type`` of a request cut off because the arbiter aborted its worker for missing ``--timeout``
TIMEOUT_ERROR = "timeout"

#: one request in flight: (perf_counter at start, active-requests key, method, span, context token, the request
#: object, the context serving it, its log ids). A plain tuple: it is built on every request, and a NamedTuple costs
#: several times as much to build. Holding the request keeps its id — the request's key in the registry of requests
#: in flight — unique until it ends. The serving context (:attr:`RequestObserver.serving`) and, for a request
#: without a span, the holder of its log ids (:mod:`otel_gunicorn._request_ids`) are what its stack line needs
#: (:mod:`otel_gunicorn._worker.request_watch`): where to read the stack, and the ids its other lines carry.
InFlight = tuple[float, AttrKey, str, Any, object, Any, object, "list[tuple[int, int] | None] | None"]

_perf_counter = time.perf_counter
#: the exception being handled here, or None (``sys.exception`` from Python 3.11: a third of ``sys.exc_info``'s cost)
_exception: Callable[[], BaseException | None] = getattr(sys, "exception", None) or (lambda: sys.exc_info()[1])


class _ByteHeadersGetter(Getter[list]):  # type: ignore[type-arg]
    """Reads ASGI-style ``[(name, value), ...]`` headers (lower-case byte strings) for the propagators: an ASGI
    scope's, or gunicorn's asgi worker request's ``headers_bytes``."""

    def get(self, carrier: list, key: str) -> list[str] | None:  # type: ignore[type-arg]
        wanted = key.lower().encode("latin-1")
        values = [bytes(v).decode("latin-1") for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: list) -> list[str]:  # type: ignore[type-arg]
        return [bytes(k).decode("latin-1") for k, _v in carrier]


BYTE_HEADERS_GETTER = _ByteHeadersGetter()


class GunicornByteHeadersRequest(GunicornRequest):
    """gunicorn's asgi worker request (``CallbackRequest``, 27+), read for its span like :class:`GunicornRequest`
    but through ``headers_bytes``: its ``headers`` are a str copy gunicorn builds the first time anything reads them
    (two decodes and an ``upper()`` per header), after which it also re-scans them to decide keep-alive."""

    getter: Getter[Any] = BYTE_HEADERS_GETTER

    @staticmethod
    def carrier(request: Any) -> Any:
        headers = getattr(request, "headers_bytes", None)
        return headers if isinstance(headers, list) else None


GUNICORN_BYTE_HEADERS_REQUEST = GunicornByteHeadersRequest()


class RequestObserver:
    """Everything otel_gunicorn does per request: metrics (:class:`RequestStats`) and the server span.

    This is the request path, so the attribute keys are built once and cached (their variety is bounded: methods
    are folded into the known ones, status codes and protocol versions are few), the request headers are read
    once, and a request in flight is one dict entry (:attr:`RequestStats.in_flight`), added without a lock; only
    its end takes the statistics' lock, once.
    """

    def __init__(
        self, stats: RequestStats | None, slot: int | None, tracing: RequestTracing, routes: RouteBound | None = None
    ) -> None:
        self._stats = stats
        #: distinct ``http.route`` values, bounded (``OTEL_GUNICORN_MAX_ROUTES``)
        self.routes = routes if routes is not None else RouteBound(DEFAULT_MAX_ROUTES)
        if stats is not None:
            stats.route_bound = self.routes
        #: gunicorn's asgi worker: ``post_request`` gets no scope; the route comes from ``routes.ASGIRouteCapture``
        self.captured_routes = False
        self._slot = slot
        self._tracing = tracing
        self._traced = tracing.enabled
        # Requests in flight by the id of their request object (gunicorn's request, an environ, a scope: the asgi
        # worker's request has __slots__, so nothing is stored on it): the statistics' registry, which counts them
        # as active, or without metrics a dict of our own.
        self._in_flight: dict[int, InFlight] = stats.in_flight if stats is not None else {}
        self._active_keys: dict[str, AttrKey] = {}
        self._duration_keys: dict[tuple[Any, ...], AttrKey] = {}
        self._errors = RateLimitedLogger(_log)
        self._aborting = False
        #: the class of the last request seen without ``headers_bytes`` (gunicorn's WSGI request, as a rule)
        self._str_headers_class: type | None = None
        #: tells which thread, greenlet or task serves a request, called when it begins (one C call:
        #: ``threading.get_ident``, ``greenlet.getcurrent``, ``asyncio.current_task``); None where every request is
        #: served on the worker's main thread (sync), which then costs nothing (``WorkerStateReader.serving``)
        self.serving: Callable[[], object] | None = None

    def wrapping(self) -> None:
        """An application wrapper feeds this observer from now on (the worker class calls no request hooks): its
        statistics measure requests."""
        if self._stats is not None:
            self._stats.wrapped = True

    # ---------------------------------------------------------------- the core both paths feed

    def begin(
        self, method: Any, has_traceparent: bool, queue_start: str | None, request: Any, source: SpanSource
    ) -> InFlight:
        """A request starts: count it in flight, record its queue time, start its span (context made current).

        Raises on a broken request; the caller guards. Everything that reads the request runs before the context
        is attached, so such a raise leaves nothing behind. Hand the result to :meth:`end`, and to :meth:`detach`
        where this was called.
        """
        if method not in KNOWN_METHODS:
            method = str(method or "").upper()
            method = method if method in KNOWN_METHODS else "_OTHER"
        active_key = self._active_keys.get(method) or self._active_key(method)
        ids: list[tuple[int, int] | None] | None
        if has_traceparent or self._traced:
            span, token = self._tracing.start(request, source, method, has_traceparent)
            ids = None
        else:  # the usual case, tracing off and no caller's trace: only the request's own ids for its log lines
            ids = [None]
            span, token = None, _mark_request(ids)  # _request_ids.begin(), inlined
        serving = self.serving
        started = _perf_counter()
        entry: InFlight = (
            started,
            active_key,
            method,
            span,
            token,
            request,
            serving() if serving is not None else None,
            ids,
        )
        self._in_flight[id(request)] = entry
        if queue_start is not None and self._stats is not None:  # None: metrics off, only span and log correlation
            self._queued(self._stats, queue_start)
        return entry

    @staticmethod
    def _queued(stats: RequestStats, queue_start: str) -> None:
        try:
            stats.queued(wait_seconds(queue_start, time.time()))
        except InvalidHeader:
            stats.invalid_header()

    def end(
        self,
        entry: InFlight,
        status: int | None,
        version: object,
        scheme: object,
        error: str | None = None,
        route: str | None = None,
    ) -> bool:
        """The response is done (body sent): record the duration and end the span. ``version`` as the path has it:
        gunicorn's ``(1, 1)``, WSGI's ``"HTTP/1.1"`` or ASGI's ``"1.1"``; ``error`` the ``error.type`` of a request
        that ended in an error other than its status (a 5xx status is one by itself); ``route`` its ``http.route``
        template (None: no route matched); the context stays attached. Returns False, recording nothing, for a
        request that has ended already."""
        started, _active_key, method, span, _token, request, _serving, _ids = entry
        elapsed = _perf_counter() - started
        if error is None and status is not None and status >= 500:
            error = str(status)  # semantic conventions: a server's 5xx is an error, typed by its status code
        if route is not None:
            route = self.routes(route)
        stats = self._stats
        if stats is not None:
            identity = (method, status, version, scheme, error, route)
            duration_key = self._duration_keys.get(identity) or self._duration_key(identity)
            if not stats.closed(id(request), duration_key, elapsed):
                return False
        elif self._in_flight.pop(id(request), None) is None:
            return False
        if span is not None:
            self._tracing.end(span, status, error, route, method)
        return True

    def detach(self, entry: InFlight) -> None:
        """Restore the context that was current before :meth:`begin` (same thread, greenlet or task as it)."""
        _detach(entry[4], self._tracing)

    def end_and_detach(
        self,
        entry: InFlight,
        status: int | None,
        version: object,
        scheme: object,
        error: str | None = None,
        route: str | None = None,
    ) -> None:
        """:meth:`end`, then :meth:`detach` even if that raised: one call where both happen at once."""
        try:
            self.end(entry, status, version, scheme, error, route)
        finally:
            _detach(entry[4], self._tracing)

    # ---------------------------------------------------------------- the hook path

    def started(self, req: Any) -> None:
        """``pre_request``: read gunicorn's request object into :meth:`begin`."""
        try:
            method = getattr(req, "method", None)
            if req.__class__ is not self._str_headers_class:
                headers = getattr(req, "headers_bytes", None)
                if headers.__class__ is list:  # gunicorn's asgi worker: read its bytes, as gunicorn itself does
                    has_traceparent, queue_start = scan_asgi_headers(headers)
                    self.begin(method, has_traceparent, queue_start, req, GUNICORN_BYTE_HEADERS_REQUEST)
                    return
                self._str_headers_class = req.__class__  # no bytes there: not worth looking again
            has_traceparent, queue_start = scan_headers(getattr(req, "headers", None))
            self.begin(method, has_traceparent, queue_start, req, GUNICORN_REQUEST)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "pre", "otel_gunicorn: pre_request telemetry failed: %r", exc)

    def finished(self, req: Any, environ: Any, resp: Any) -> None:
        """``post_request``: the request is done, body sent; record its duration and end its span, with the route
        the application left in ``environ`` (WSGI) or in the capture (gunicorn's asgi worker).

        gunicorn calls ``post_request`` from a ``finally``, so an exception cutting the request off — the
        application's, or the ``SystemExit`` of a worker aborted for ``--timeout`` — is still in flight here: it
        becomes the request's ``error.type``, and the status is the one the client receives: the response's if its
        headers were sent, else the 500 of gunicorn's error page.
        """
        try:
            entry = self._in_flight.get(id(req))
            if entry is None:
                return
            status = getattr(resp, "status_code", None)
            if status.__class__ is not int and resp is not None:  # not the usual WSGI response: the long way
                status = status_code(resp)  # (no response at all: the asgi worker without an access log)
            exc = _exception()
            error = None
            if exc is not None:
                error = _cut_off_by(exc, self._aborting)
                if not getattr(resp, "headers_sent", False):
                    # No status line left yet: gunicorn answers with its own 500 page after post_request, unless
                    # the connection itself failed.
                    status = None if isinstance(exc, OSError) else 500
            # read here, not through routes.wsgi_route: no function layer on every request; RouteBound (only for a
            # request with a route) turns a value that is no str into None
            if self.captured_routes:
                route = captured_asgi_route()
            else:
                try:  # a dict, or None from gunicorn's asgi worker; anything else has no route
                    route = environ.get(ROUTE_KEY) if environ is not None else None
                except AttributeError:
                    route = None
            self.end_and_detach(
                entry, status, getattr(req, "version", None), getattr(req, "scheme", None), error, route
            )
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "post", "otel_gunicorn: post_request telemetry failed: %r", exc)

    def abort(self) -> None:
        """``worker_abort``: the arbiter is aborting this worker for missing ``--timeout``; the requests the abort
        cuts off end with ``error.type="timeout"``."""
        self._aborting = True

    def in_flight(self) -> list[InFlight]:
        """The requests in flight now (a copy: one C call, safe against the threads serving them)."""
        return list(self._in_flight.values())

    def abandon_in_flight(self) -> int:
        """The worker is exiting: record the hook-path requests that will never reach ``post_request`` (the
        threads of an aborted gthread worker) as failed, so the final report has them. Returns how many."""
        if not self._aborting:
            return 0  # a graceful exit lets every request finish first
        # end() takes each out of the registry: one a thread finishes meanwhile is recorded once, by either
        return sum(self.end(entry, None, None, None, TIMEOUT_ERROR) for entry in list(self._in_flight.values()))

    # ---------------------------------------------------------------- attribute keys, built once

    def _active_key(self, method: str) -> AttrKey:
        """``http.server.active_requests`` attributes, in sorted order (slot first)."""
        key: AttrKey = ((HTTP_REQUEST_METHOD, method),)
        if self._slot is not None:
            key = ((SLOT_ATTRIBUTE, self._slot), *key)
        if self._stats is not None:
            self._stats.known_key(key)
        self._active_keys[method] = key
        return key

    def _duration_key(self, identity: tuple[Any, ...]) -> AttrKey:
        """``http.server.request.duration`` attributes, in sorted order."""
        method, status, version, scheme, error, route = identity
        key: list[tuple[str, Any]] = [(ERROR_TYPE, error)] if error is not None else []
        key.append((HTTP_REQUEST_METHOD, method))
        if status is not None:
            key.append((HTTP_RESPONSE_STATUS_CODE, status))
        if route is not None:
            key.append((HTTP_ROUTE, route))
        protocol = protocol_version(version)
        if protocol is not None:
            key.append((NETWORK_PROTOCOL_VERSION, protocol))
        if isinstance(scheme, str):
            key.append((URL_SCHEME, scheme))
        if len(self._duration_keys) < _MAX_CACHED_KEYS:
            self._duration_keys[identity] = tuple(key)
        return tuple(key)


_mark_request = _request_ids.SET
_REQUEST_IDS = _request_ids.VAR
_unmark_request = _request_ids.RESET


def _detach(token: Any, tracing: RequestTracing) -> None:
    """What :meth:`RequestObserver.detach` does: the usual token, a spanless request's, ends here without a call."""
    if token is None:
        return
    if token.__class__ is _Token and token.var is _REQUEST_IDS:
        try:
            _unmark_request(token)
        except ValueError:  # ended in another context than it began in: _request_ids knows what to do
            _request_ids.end(token)
    else:
        tracing.detach(token)


def _cut_off_by(exc: BaseException, aborting: bool) -> str:
    """The ``error.type`` of a request during whose ``post_request`` ``exc`` is propagating."""
    if aborting:
        return TIMEOUT_ERROR
    if isinstance(exc, StopIteration) and exc.__context__ is not None:
        exc = exc.__context__  # the sync worker's way of closing a connection whose response had already started
    return type(exc).__qualname__


def protocol_version(version: object) -> str | None:
    """``network.protocol.version`` from gunicorn's ``(1, 1)``, WSGI's ``"HTTP/1.1"`` or ASGI's ``"1.1"`` / ``"2"``:
    ``"1.0"``, ``"1.1"``, ``"2"``, ``"3"`` (semantic conventions drop the minor version from 2 on); None if
    unreadable."""
    if isinstance(version, tuple) and len(version) == 2:
        major, minor = version
    elif isinstance(version, str):
        text = version[5:] if version[:5].upper() == "HTTP/" else version
        head, _dot, tail = text.partition(".")
        if not head.isdigit() or not (tail or "0").isdigit():
            return None
        major, minor = int(head), int(tail or "0")
    else:
        return None
    if not isinstance(major, int) or not isinstance(minor, int):
        return None
    return f"{major}.{minor}" if major < 2 else str(major)
