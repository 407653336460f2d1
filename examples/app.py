"""A small WSGI application that records metrics with the plain OpenTelemetry API (no otel_gunicorn import).

Run it with ``make demo`` or ``gunicorn -c python:otel_gunicorn.conf examples.app:app``.
"""

import os
import time

from opentelemetry import metrics

#: Bucket boundaries in seconds, from half a millisecond to 10 s (the semantic conventions' advice for request
#: durations, with finer steps below 5 ms). Give every histogram boundaries in its own unit: without them the SDK
#: uses its default ones (0, 5, 10, 25, ... 10000), meant for milliseconds, and every duration in seconds lands in
#: the first bucket.
WORK_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: what each page pretends to spend on its work (a database call, a payment service), in seconds
WORK = {"/cart": 0.002, "/checkout": 0.02}

meter = metrics.get_meter("example.app", "1.0")
requests_counter = meter.create_counter("app.requests", unit="{request}", description="Requests served by the app.")
work_histogram = meter.create_histogram(
    "app.work.duration",
    unit="s",
    description="Time spent working per request.",
    explicit_bucket_boundaries_advisory=WORK_SECONDS_BUCKETS,
)
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
        path = environ.get("PATH_INFO", "/")
        requests_counter.add(1, {"http.route": path})
        if path in WORK:
            time.sleep(WORK[path])
        body = b"hello from pid %d\n" % os.getpid()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    finally:
        work_histogram.record(time.perf_counter() - started)
        in_progress.add(-1)
