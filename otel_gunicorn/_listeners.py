"""Listener queue points for a set of listening sockets, shared by both process sides.

The arbiter measures its ``LISTENERS``; under ``reuse_port`` each worker measures its own sockets instead. A probe
that fails leaves that listener out (logged once an hour per listener): the series is absent, never a fake 0.
"""

from __future__ import annotations

import logging
import socket

from opentelemetry.semconv.attributes.network_attributes import NETWORK_TRANSPORT

from otel_gunicorn import _probes
from otel_gunicorn._instruments import LISTENER_ATTRIBUTE
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import AttrKey, Value, attr_key

_log = logging.getLogger("otel_gunicorn")
_errors = RateLimitedLogger(_log, interval=3600.0)


def transport(sock: socket.socket) -> str:
    """``network.transport`` of a listening socket."""
    return "unix" if sock.family == getattr(socket, "AF_UNIX", None) else "tcp"


def listener_points(sockets: list[tuple[str, socket.socket]]) -> tuple[dict[AttrKey, Value], dict[AttrKey, Value]]:
    """Queued connections and backlog limits of ``(name, socket)`` listeners; failing probes are left out."""
    queued: dict[AttrKey, Value] = {}
    limits: dict[AttrKey, Value] = {}
    for name, sock in sockets:
        try:
            queue = _probes.probe(sock)
        except (OSError, ValueError) as exc:
            _errors.log(logging.WARNING, name, "otel_gunicorn: cannot read the queue of listener %s: %s", name, exc)
            continue
        if queue is None:
            continue
        key = attr_key({LISTENER_ATTRIBUTE: name, NETWORK_TRANSPORT: transport(sock)})
        queued[key] = queue.queued
        limits[key] = queue.limit
    return queued, limits
