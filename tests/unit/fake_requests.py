"""The smallest stand-ins for gunicorn's request and response objects, as its request hooks receive them."""

from __future__ import annotations


class Req:
    """A ``GET`` over HTTP/1.1 without headers, as gunicorn's WSGI request shows it to ``pre_request``."""

    method = "GET"
    scheme = "http"
    version = (1, 1)
    headers: list[tuple[str, str]] = []


class Resp:
    """A response answered ``200``, as ``post_request`` receives it."""

    status_code = 200
