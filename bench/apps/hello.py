"""Bench application: hello world, recording nothing. ``app`` is WSGI, ``asgi_app`` ASGI 3.

The body is the worker's pid (the bench counts workers and recycles with it). ``/ready`` is the harness's readiness
probe and answers the same way.
"""

import os


def _body() -> bytes:
    return b"hello from %d\n" % os.getpid()


def app(environ, start_response):
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def lifespan(receive, send):
    """Answer the ASGI lifespan protocol (startup, shutdown) so every ASGI server starts the app the same way."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await respond(send, _body())
