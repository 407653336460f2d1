"""Test application that turns one of the server's own workers hostile: it writes garbage to the arbiter's channel."""

import socket
import struct

from counting import app as counting_app

from otel_gunicorn import _handoff


def _send(payload: bytes) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(2)
    link = _handoff.inherited()
    assert link is not None and link.channel_path is not None, "not a worker of an arbiter with metrics on"
    try:
        sock.connect(link.channel_path)
        sock.sendall(payload)
    finally:
        sock.close()


def app(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/garbage":
        _send(b"GET / HTTP/1.1\r\n\r\n" * 10)  # not our magic
        _send(struct.pack("!4sBBHI", b"OTGU", 1, 1, 0, 2**31) + b"x" * 100)  # announces 2 GiB
        _send(struct.pack("!4sBBHI", b"OTGU", 1, 1, 0, 5) + b"{nope")  # not JSON
        _send(struct.pack("!4sBBHI", b"OTGU", 1, 1, 0, 15) + b'{"metrics": 42}')  # JSON, wrong shape
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    return counting_app(environ, start_response)
