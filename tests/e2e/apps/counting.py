"""Test application: records with the plain OpenTelemetry API only, as a user's app would."""

import os
import time

from opentelemetry import metrics

meter = metrics.get_meter("tests.counting", "1.0")
requests_total = meter.create_counter("app.requests", unit="{request}", description="Requests the app served.")
latency = meter.create_histogram("app.latency", unit="s", description="Time the app spent per request.")
in_flight = meter.create_up_down_counter("app.in_flight", unit="{request}", description="Requests in the app now.")


def _pid(_options):
    yield metrics.Observation(os.getpid(), {"kind": "pid"})


meter.create_observable_gauge("app.worker.pid", [_pid], description="The worker's pid: one series per worker.")


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/ready":  # the test harness's readiness probe is not application traffic
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    started = time.perf_counter()
    in_flight.add(1)
    try:
        if environ.get("PATH_INFO") == "/slow":
            time.sleep(float(environ.get("QUERY_STRING") or 1))
        requests_total.add(1)
        body = b"%d\n" % os.getpid()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    finally:
        latency.record(time.perf_counter() - started)
        in_flight.add(-1)
