"""Bench application: hello world with one counter, recorded with the plain OpenTelemetry API only.

Under bare gunicorn the API is a no-op; under ``-c python:otel_gunicorn.conf`` the counter is real and reported to
the arbiter. The body is the worker's pid.
"""

import os

from opentelemetry import metrics

requests_total = metrics.get_meter("bench.hello", "1.0").create_counter(
    "bench.hello.requests", unit="{request}", description="Requests served."
)


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/ready":
        requests_total.add(1)
    body = b"hello from %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
