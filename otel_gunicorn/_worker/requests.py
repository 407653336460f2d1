"""Request metrics and spans from gunicorn's ``pre_request`` / ``post_request`` hooks.

Runs in a worker, on the thread, greenlet or event loop serving the request, so it must be cheap and must never
raise into the request. Measuring from the hooks rather than by wrapping the application puts a streamed body inside
the measured time (``post_request`` runs after the body is sent).

Request objects differ by worker class (the asgi worker's has ``__slots__``), so in-flight state is kept here, keyed
by the request object's id, rather than on the request.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import AttrKey
from otel_gunicorn._worker.queue_time import InvalidHeader, header_value, wait_seconds
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.tracing import RequestTracing

_log = logging.getLogger("otel_gunicorn")

#: methods semantic conventions name; anything else is reported as _OTHER to keep cardinality bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


@dataclasses.dataclass
class _InFlight:
    started: float
    active_key: AttrKey
    method: str
    span: Any
    token: object


class RequestObserver:
    """Everything otel_gunicorn does per request: metrics (:class:`RequestStats`) and the server span."""

    def __init__(self, stats: RequestStats, slot: int | None, tracing: RequestTracing) -> None:
        self._stats = stats
        self._slot = slot
        self._tracing = tracing
        # Keyed by the request object's id: the asgi worker's request has __slots__, nothing can be stored on it.
        self._in_flight: dict[int, _InFlight] = {}
        self._errors = RateLimitedLogger(_log)

    def started(self, req: Any) -> None:
        """``pre_request``: count the request in flight, record its queue time, start its span."""
        try:
            method = str(getattr(req, "method", "") or "").upper()
            if method not in KNOWN_METHODS:
                method = "_OTHER"
            attributes: dict[str, Any] = {"http.request.method": method}
            if self._slot is not None:
                attributes["gunicorn.worker.slot"] = self._slot
            # attribute keys built in sorted order directly: this is the request path
            active_key: AttrKey = (
                tuple(sorted(attributes.items())) if len(attributes) > 1 else (("http.request.method", method),)
            )
            span, token = self._tracing.start(req, attributes)
            self._in_flight[id(req)] = _InFlight(time.perf_counter(), active_key, method, span, token)
            self._stats.started(active_key)
            header = header_value(getattr(req, "headers", None))
            if header is not None:
                try:
                    self._stats.queued(wait_seconds(header, time.time()))
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
            elapsed = time.perf_counter() - entry.started
            status = _status_code(resp)
            self._stats.finished(entry.active_key, _duration_key(req, status, entry.method), elapsed)
            self._tracing.finish(entry.span, entry.token, status)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "post", "otel_gunicorn: post_request telemetry failed: %r", exc)


def _duration_key(req: Any, status: int | None, method: str) -> AttrKey:
    """The duration histogram's attributes, as a key already in sorted order."""
    key: list[tuple[str, Any]] = [("http.request.method", method)]
    if status is not None:
        key.append(("http.response.status_code", status))
    version = getattr(req, "version", None)
    if isinstance(version, tuple) and len(version) == 2:
        major, minor = version
        key.append(("network.protocol.version", f"{major}.{minor}" if major < 2 else str(major)))
    scheme = getattr(req, "scheme", None)
    if isinstance(scheme, str):
        key.append(("url.scheme", scheme))
    return tuple(key)


def _status_code(resp: Any) -> int | None:
    """The response status as an int: WSGI responses carry ``status_code``, ASGI ones ``status``; None if unknown."""
    for name in ("status_code", "status"):
        value = getattr(resp, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value[:3].isdigit():
            return int(value[:3])
    return None
