"""Loopback sockets and plain HTTP for the harness: free ports, one GET on a new connection."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick; someone may take it before it is used)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    """Whether a server could bind ``127.0.0.1:port`` now (with SO_REUSEADDR, as HTTP servers bind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def get(
    port: int, path: str = "/", *, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    """``(status, body)`` of one GET to ``127.0.0.1:port`` on a new connection."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
