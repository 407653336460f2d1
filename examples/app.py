"""A small WSGI application that records metrics with the plain OpenTelemetry API (no otel_gunicorn import).

Run it with ``make demo`` or ``gunicorn -c python:otel_gunicorn.conf examples.app:app``.
"""

import os
import time

from opentelemetry import metrics

meter = metrics.get_meter("example.app", "1.0")
requests_counter = meter.create_counter("app.requests", unit="{request}", description="Requests served by the app.")
work_histogram = meter.create_histogram("app.work.duration", unit="s", description="Time spent working per request.")
in_progress = meter.create_up_down_counter(
    "app.requests.in_progress", unit="{request}", description="Requests in progress."
)


def _worker_pid(_options):
    yield metrics.Observation(os.getpid())


meter.create_observable_gauge(
    "app.worker.pid", [_worker_pid], description="The worker's process id (one series per worker)."
)


def app(environ, start_response):
    started = time.perf_counter()
    in_progress.add(1)
    try:
        requests_counter.add(1, {"http.route": environ.get("PATH_INFO", "/")})
        body = b"hello from pid %d\n" % os.getpid()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    finally:
        work_histogram.record(time.perf_counter() - started)
        in_progress.add(-1)
