"""Test application with a fixed service time, for the utilisation load ramp (WSGI, and ASGI as ``asgi_app``).

``/sleep?S`` waits S seconds without using the CPU (what a sync or gthread worker spends on a database call);
``/spin?S`` keeps the CPU busy for S seconds of wall time without yielding (what a CPU-bound handler does to an
event loop: gevent's hub or asyncio's loop runs nothing else meanwhile). Spinning on the wall clock rather than for
a fixed amount of work keeps the service time fixed when the load generator competes for the CPU.
"""

import time

from lifespan import answer_lifespan


def _serve(path: str, query: str) -> None:
    seconds = float(query or 0)
    if path == "/sleep":
        time.sleep(seconds)
    elif path == "/spin":
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            pass


def app(environ, start_response):
    _serve(environ.get("PATH_INFO", "/"), environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    _serve(scope.get("path", "/"), scope.get("query_string", b"").decode())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
