"""Bench application: ``manyseries.py``'s ~100 series per worker, recorded with prometheus_client.

24 counters x 4 label values + one histogram x 4 label values, the same shape as ``manyseries.py``. Run with
``PROMETHEUS_MULTIPROC_DIR`` set and ``-c python:prom_conf``; ``prom_exporter.py`` serves the merged metrics. Every
request adds to every series; ``/ready`` records nothing. The body is the worker's pid.
"""

import os
import time

from prometheus_client import Counter, Histogram

COUNTERS = 24
VALUES = ("alpha", "beta", "gamma", "delta")

counters = [Counter(f"bench_events_{i:02d}", f"Bench counter number {i}.", ["bench_kind"]) for i in range(COUNTERS)]
latency = Histogram("bench_latency_seconds", "Time spent per request.", ["bench_kind"])


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/ready":
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    started = time.perf_counter()
    for counter in counters:
        for value in VALUES:
            counter.labels(bench_kind=value).inc()
    elapsed = time.perf_counter() - started
    for value in VALUES:
        latency.labels(bench_kind=value).observe(elapsed)
    body = b"%d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
