"""Bench application: about 100 series per worker, recorded with the plain OpenTelemetry API only.

24 counters x 4 attribute values = 96 counter series, plus one histogram x 4 attribute values = 100 series. Every
request adds to every series, so a worker that has served one request reports all of them. ``/ready`` is the
harness's readiness probe and records nothing. The body is the worker's pid (used to count worker recycles).
"""

import os
import time

from opentelemetry import metrics

COUNTERS = 24
VALUES = ("alpha", "beta", "gamma", "delta")

meter = metrics.get_meter("bench.manyseries", "1.0")
counters = [
    meter.create_counter(f"bench.events.{i:02d}", unit="{event}", description=f"Bench counter number {i}.")
    for i in range(COUNTERS)
]
latency = meter.create_histogram("bench.latency", unit="s", description="Time spent per request.")
_attributes = [{"bench.kind": value} for value in VALUES]


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/ready":
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    started = time.perf_counter()
    for counter in counters:
        for attributes in _attributes:
            counter.add(1, attributes)
    elapsed = time.perf_counter() - started
    for attributes in _attributes:
        latency.record(elapsed, attributes)
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
