"""Bench application: hello world recording one counter and one histogram per request with the OpenTelemetry API.

Each with one attribute, as an application would record its own measurements. Under bare gunicorn the API is a
no-op; under otel_gunicorn (or an SDK set up in ``post_fork``) the instruments are real. ``app`` is WSGI,
``asgi_app`` ASGI 3; ``/ready`` (the harness's readiness probe) records nothing.
"""

import time

from hello import _body, lifespan, respond
from opentelemetry import metrics

meter = metrics.get_meter("bench.recording", "1.0")
requests_total = meter.create_counter("bench.requests", unit="{request}", description="Requests served.")
duration = meter.create_histogram("bench.handler.duration", unit="s", description="Time spent in the handler.")
ATTRIBUTES = {"bench.route": "hello"}


def app(environ, start_response):
    started = time.perf_counter()
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    if environ.get("PATH_INFO") != "/ready":
        requests_total.add(1, ATTRIBUTES)
        duration.record(time.perf_counter() - started, ATTRIBUTES)
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    started = time.perf_counter()
    await respond(send, _body())
    if scope.get("path") != "/ready":
        requests_total.add(1, ATTRIBUTES)
        duration.record(time.perf_counter() - started, ATTRIBUTES)
