"""How long a request waited in front of the worker, from a proxy's ``X-Request-Start`` / ``X-Queue-Start`` header.

Pure functions, used where a worker starts a request (``pre_request``, or the WSGI/ASGI wrapper around the
application). Formats seen in the wild:

* ``t=1700000000123456`` — microseconds since the epoch (Heroku, New Relic convention);
* ``t=1700000000.123`` — nginx ``t=${msec}``: seconds with a fraction;
* a bare number of seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.

A value that cannot be parsed, lies in the future beyond clock-skew tolerance, or is absurdly old is *invalid*:
ignored and counted by the caller, never raised into the request.
"""

from __future__ import annotations

import math

HEADERS = ("X-REQUEST-START", "X-QUEUE-START")
#: the same names as an ASGI server passes them: lower-case bytes
_ASGI_HEADERS = (b"x-request-start", b"x-queue-start")

#: a start up to this many seconds in the future is clock skew between proxy and worker, counted as no wait
SKEW_TOLERANCE = 1.0
#: a wait longer than this is not a queue but a wrong clock or a replayed header
MAX_WAIT = 3600.0

# Epoch timestamps of the current era by unit: seconds ~1.7e9, ms ~1.7e12, µs ~1.7e15, ns ~1.7e18.
_UNIT_BY_MAGNITUDE = ((1e11, 1.0), (1e14, 1e-3), (1e17, 1e-6), (1e20, 1e-9))


class InvalidHeader(ValueError):
    """The header's value is unusable (malformed, future or absurd)."""


def parse_start(value: str) -> float:
    """The epoch time in seconds a request-start header value stands for; raise :class:`InvalidHeader`."""
    text = value.strip()
    if text[:2] in ("t=", "T="):
        text = text[2:]
    try:
        number = float(text)
    except ValueError:
        raise InvalidHeader(f"not a number: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise InvalidHeader(f"not a positive finite number: {value!r}")
    for below, scale in _UNIT_BY_MAGNITUDE:
        if number < below:
            return number * scale
    raise InvalidHeader(f"too large for an epoch timestamp: {value!r}")


def wait_seconds(value: str, now: float) -> float:
    """Seconds between the proxy's start time in ``value`` and ``now`` (epoch seconds); raise :class:`InvalidHeader`."""
    waited = now - parse_start(value)
    if waited < -SKEW_TOLERANCE:
        raise InvalidHeader(f"{-waited:.3f} s in the future: {value!r}")
    if waited > MAX_WAIT:
        raise InvalidHeader(f"{waited:.0f} s ago, longer than {MAX_WAIT:.0f} s: {value!r}")
    return max(waited, 0.0)


#: the names :func:`scan_headers` looks for, as gunicorn spells them
_SCANNED = frozenset(("TRACEPARENT", *HEADERS))
_NOTHING: tuple[bool, str | None] = (False, None)


def scan_headers(headers: object) -> tuple[bool, str | None]:
    """One pass over gunicorn's ``[(NAME, value), ...]`` request headers (names upper-cased): whether a W3C
    ``traceparent`` is present, and the first request-start header's value (or None).

    On every request, so the usual case — none of these headers — costs one set lookup per header and allocates
    nothing; the rare request carrying one is read again, in full."""
    if isinstance(headers, list):
        try:
            for item in headers:
                if item[0] in _SCANNED:
                    return _scan(headers)
        except TypeError:  # a name that cannot be hashed: the long way, which compares
            return _scan(headers)
    return _NOTHING


def _scan(headers: list[tuple[str, object]]) -> tuple[bool, str | None]:
    has_traceparent = False
    queue_start = None
    for item in headers:
        name = item[0]
        if name == "TRACEPARENT":
            has_traceparent = True
        elif queue_start is None and name in HEADERS:
            queue_start = str(item[1])
    return has_traceparent, queue_start


_ASGI_SCANNED = frozenset((b"traceparent", *_ASGI_HEADERS))


def scan_asgi_headers(headers: object) -> tuple[bool, str | None]:
    """:func:`scan_headers` for an ASGI scope's ``[(name, value), ...]`` headers (lower-case byte strings)."""
    if isinstance(headers, (list, tuple)):
        try:
            for item in headers:
                if item[0] in _ASGI_SCANNED:
                    return _scan_asgi(headers)
        except TypeError:  # a name that cannot be hashed (a bytearray): the long way, which compares
            return _scan_asgi(headers)
    return _NOTHING


def _scan_asgi(headers: list[tuple[bytes, object]] | tuple[tuple[bytes, object], ...]) -> tuple[bool, str | None]:
    has_traceparent = False
    queue_start = None
    for item in headers:
        name = item[0]
        if name == b"traceparent":
            has_traceparent = True
        elif queue_start is None and name in _ASGI_HEADERS:
            value = item[1]
            queue_start = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return has_traceparent, queue_start
