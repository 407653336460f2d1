"""Test application: logs with plain stdlib ``logging``, as most applications do; WSGI ``app`` and ASGI ``asgi_app``."""

import logging

from lifespan import answer_lifespan

log = logging.getLogger("app")
BODY = b"hello\n"


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/ready":  # the harness's readiness probe is not application traffic
        log.info("in.app")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    if scope.get("path") != "/ready":
        log.info("in.app")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})
