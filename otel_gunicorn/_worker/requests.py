"""Request metrics and spans from gunicorn's ``pre_request`` / ``post_request`` hooks.

Runs in a worker, on the thread, greenlet or event loop serving the request, so it must be cheap and must never
raise into the request. Measuring from the hooks rather than by wrapping the application puts a streamed body inside
the measured time (``post_request`` runs after the body is sent).

Request objects differ by worker class (the asgi worker's has ``__slots__``), so in-flight state is kept here, keyed
by the request object's id, rather than on the request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.url_attributes import URL_SCHEME

from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._responses import status_code
from otel_gunicorn._snapshot import AttrKey
from otel_gunicorn._worker.queue_time import InvalidHeader, scan_headers, wait_seconds
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.tracing import RequestTracing

_log = logging.getLogger("otel_gunicorn")

#: methods semantic conventions name; anything else is reported as _OTHER to keep cardinality bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
#: bound on cached attribute keys (a client could send any status-producing request; the cache must not grow)
_MAX_CACHED_KEYS = 512


class RequestObserver:
    """Everything otel_gunicorn does per request: metrics (:class:`RequestStats`) and the server span.

    This is the request path, so the attribute keys are built once and cached (their variety is bounded: methods
    are folded into the known ones, status codes are few), and the request headers are scanned once.
    """

    def __init__(self, stats: RequestStats | None, slot: int | None, tracing: RequestTracing) -> None:
        self._stats = stats
        self._slot = slot
        self._tracing = tracing
        # Keyed by the request object's id: the asgi worker's request has __slots__, nothing can be stored on it.
        # Values: (perf_counter at start, active-requests key, method, span, context token).
        self._in_flight: dict[int, tuple[float, AttrKey, str, Any, object]] = {}
        self._active_keys: dict[str, AttrKey] = {}
        self._duration_keys: dict[tuple[Any, ...], AttrKey] = {}
        self._errors = RateLimitedLogger(_log)

    def started(self, req: Any) -> None:
        """``pre_request``: count the request in flight, record its queue time, start its span."""
        try:
            method = getattr(req, "method", None)
            if method not in KNOWN_METHODS:
                method = str(method or "").upper()
                method = method if method in KNOWN_METHODS else "_OTHER"
            active_key = self._active_keys.get(method) or self._active_key(method)
            has_traceparent, queue_start = scan_headers(getattr(req, "headers", None))
            span, token = self._tracing.start(req, method, has_traceparent)
            self._in_flight[id(req)] = (time.perf_counter(), active_key, method, span, token)
            if self._stats is None:  # metrics off: only the span and the log correlation
                return
            self._stats.started(active_key)
            if queue_start is not None:
                try:
                    self._stats.queued(wait_seconds(queue_start, time.time()))
                except InvalidHeader:
                    self._stats.invalid_header()
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "pre", "otel_gunicorn: pre_request telemetry failed: %r", exc)

    def finished(self, req: Any, resp: Any) -> None:
        """``post_request``: the request is done, body sent; record its duration and end its span."""
        try:
            entry = self._in_flight.pop(id(req), None)
            if entry is None:
                return
            started, active_key, method, span, token = entry
            elapsed = time.perf_counter() - started
            status = status_code(resp)
            identity = (method, status, getattr(req, "version", None), getattr(req, "scheme", None))
            if self._stats is not None:
                duration_key = self._duration_keys.get(identity) or self._duration_key(identity)
                self._stats.finished(active_key, duration_key, elapsed)
            self._tracing.finish(span, token, status)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "post", "otel_gunicorn: post_request telemetry failed: %r", exc)

    def _active_key(self, method: str) -> AttrKey:
        """``http.server.active_requests`` attributes, in sorted order (slot first)."""
        key: AttrKey = ((HTTP_REQUEST_METHOD, method),)
        if self._slot is not None:
            key = ((SLOT_ATTRIBUTE, self._slot), *key)
        self._active_keys[method] = key
        return key

    def _duration_key(self, identity: tuple[Any, ...]) -> AttrKey:
        """``http.server.request.duration`` attributes, in sorted order."""
        method, status, version, scheme = identity
        key: list[tuple[str, Any]] = [(HTTP_REQUEST_METHOD, method)]
        if status is not None:
            key.append((HTTP_RESPONSE_STATUS_CODE, status))
        if isinstance(version, tuple) and len(version) == 2:
            major, minor = version
            key.append((NETWORK_PROTOCOL_VERSION, f"{major}.{minor}" if major < 2 else str(major)))
        if isinstance(scheme, str):
            key.append((URL_SCHEME, scheme))
        if len(self._duration_keys) < _MAX_CACHED_KEYS:
            self._duration_keys[identity] = tuple(key)
        return tuple(key)
