"""What gunicorn's response objects say about the response, read the same way by every part of otel_gunicorn.

Worker classes hand the hooks and the access log different response objects: WSGI responses carry an int
``status_code`` and a ``"200 OK"`` ``status``; the asgi worker's carries an int ``status``; gevent's pywsgi a string.
"""

from __future__ import annotations

from typing import Any


def status_code(resp: Any) -> int | None:
    """The response status as an int, or None when the object does not tell."""
    code = getattr(resp, "status_code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    status = getattr(resp, "status", None)
    if isinstance(status, int) and not isinstance(status, bool):
        return status
    if isinstance(status, bytes):
        status = status.decode("latin-1")
    if isinstance(status, str):
        head = status.split(None, 1)[:1]
        if head and head[0].isdigit():
            return int(head[0])
    return None
