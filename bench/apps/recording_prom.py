"""Bench application: the same as ``recording.py`` with prometheus_client (one counter, one histogram, one label).

Run with ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's multiprocess mode) and ``-c python:prom_conf``.
``app`` is WSGI, ``asgi_app`` ASGI 3; ``/ready`` records nothing.
"""

import time

from hello import _body, lifespan, respond
from prometheus_client import Counter, Histogram

requests_total = Counter("bench_requests", "Requests served.", ["route"])
duration = Histogram("bench_handler_duration_seconds", "Time spent in the handler.", ["route"])


def app(environ, start_response):
    started = time.perf_counter()
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    if environ.get("PATH_INFO") != "/ready":
        requests_total.labels(route="hello").inc()
        duration.labels(route="hello").observe(time.perf_counter() - started)
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    started = time.perf_counter()
    await respond(send, _body())
    if scope.get("path") != "/ready":
        requests_total.labels(route="hello").inc()
        duration.labels(route="hello").observe(time.perf_counter() - started)
