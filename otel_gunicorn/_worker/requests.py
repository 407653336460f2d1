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

from opentelemetry.metrics import Meter

from otel_gunicorn import _instruments as inst
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._worker.queue_time import InvalidHeader, header_value, wait_seconds
from otel_gunicorn._worker.tracing import RequestTracing

_log = logging.getLogger("otel_gunicorn")

#: methods semantic conventions name; anything else is reported as _OTHER to keep cardinality bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


@dataclasses.dataclass
class _InFlight:
    started: float
    attributes: dict[str, Any]
    span: Any
    token: object


class RequestObserver:
    """Everything otel_gunicorn does per request: metrics and, through :class:`RequestTracing`, the server span."""

    def __init__(self, meter: Meter, slot: int | None, tracing: RequestTracing) -> None:
        self._active = meter.create_up_down_counter(
            inst.ACTIVE_REQUESTS.name, unit=inst.ACTIVE_REQUESTS.unit, description=inst.ACTIVE_REQUESTS.description
        )
        self._duration = meter.create_histogram(
            inst.REQUEST_DURATION.name,
            unit=inst.REQUEST_DURATION.unit,
            description=inst.REQUEST_DURATION.description,
            explicit_bucket_boundaries_advisory=inst.DURATION_BUCKETS,
        )
        self._queue = meter.create_histogram(
            inst.QUEUE_DURATION.name,
            unit=inst.QUEUE_DURATION.unit,
            description=inst.QUEUE_DURATION.description,
            explicit_bucket_boundaries_advisory=inst.DURATION_BUCKETS,
        )
        self._invalid_headers = meter.create_counter(
            inst.QUEUE_HEADER_INVALID.name,
            unit=inst.QUEUE_HEADER_INVALID.unit,
            description=inst.QUEUE_HEADER_INVALID.description,
        )
        self._slot = slot
        self._tracing = tracing
        # Keyed by the request object's id: the asgi worker's request has __slots__, nothing can be stored on it.
        self._in_flight: dict[int, _InFlight] = {}
        self._errors = RateLimitedLogger(_log)

    def started(self, req: Any) -> None:
        """``pre_request``: count the request in flight, record its queue time, start its span."""
        try:
            method = str(getattr(req, "method", "") or "").upper()
            attributes: dict[str, Any] = {"http.request.method": method if method in KNOWN_METHODS else "_OTHER"}
            if self._slot is not None:
                attributes["gunicorn.worker.slot"] = self._slot
            span, token = self._tracing.start(req, attributes)
            self._in_flight[id(req)] = _InFlight(time.perf_counter(), attributes, span, token)
            self._active.add(1, attributes)
            header = header_value(getattr(req, "headers", None))
            if header is not None:
                try:
                    self._queue.record(wait_seconds(header, time.time()))
                except InvalidHeader:
                    self._invalid_headers.add(1)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "pre", "otel_gunicorn: pre_request telemetry failed: %r", exc)

    def finished(self, req: Any, resp: Any) -> None:
        """``post_request``: the request is done, body sent; record its duration and end its span."""
        try:
            entry = self._in_flight.pop(id(req), None)
            if entry is None:
                return
            elapsed = time.perf_counter() - entry.started
            self._active.add(-1, entry.attributes)
            status = _status_code(resp)
            method = entry.attributes["http.request.method"]
            self._duration.record(elapsed, _duration_attributes(req, status, method))
            self._tracing.finish(entry.span, entry.token, status)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._errors.log(logging.WARNING, "post", "otel_gunicorn: post_request telemetry failed: %r", exc)


def _duration_attributes(req: Any, status: int | None, method: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"http.request.method": method}
    if status is not None:
        attributes["http.response.status_code"] = status
    scheme = getattr(req, "scheme", None)
    if isinstance(scheme, str):
        attributes["url.scheme"] = scheme
    version = getattr(req, "version", None)
    if isinstance(version, tuple) and len(version) == 2:
        major, minor = version
        attributes["network.protocol.version"] = f"{major}.{minor}" if major < 2 else str(major)
    return attributes


def _status_code(resp: Any) -> int | None:
    """The response status as an int: WSGI responses carry ``status_code``, ASGI ones ``status``; None if unknown."""
    for name in ("status_code", "status"):
        value = getattr(resp, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value[:3].isdigit():
            return int(value[:3])
    return None
