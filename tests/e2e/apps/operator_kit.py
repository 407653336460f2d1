"""Test application for the operator kit (tests/e2e/test_promql.py): every condition the dashboard and alerts show.

Endpoints: ``/`` (200, counted by the app's own counter ``app.orders``), ``/fail`` (500), ``/slow?SECONDS`` (holds a
worker or thread), ``/crash`` (the worker dies of an exception soon after answering: an *error* exit), ``/kill`` (the
worker SIGKILLs itself: a *killed* exit), ``/hang`` (sleeps until the arbiter aborts it: a *timeout* exit).

The exits are meant for the sync worker. An exception raised by the application never ends a worker: gunicorn turns
it, ``SystemExit`` included, into a 500. So ``/crash`` makes the worker's own wait for the next connection raise, in
its main loop outside any request, as a bug in a worker class would.
"""

import os
import signal
import time

from gunicorn.workers.sync import SyncWorker
from opentelemetry import metrics

orders = metrics.get_meter("tests.operator_kit", "1.0").create_counter(
    "app.orders", unit="{order}", description="Orders the app took: its own OpenTelemetry counter."
)


def _respond(start_response, status: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def _crashing_wait(_worker, _timeout):
    raise RuntimeError("operator_kit: the worker crashes on purpose (/crash)")


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/ready":  # the harness's readiness probe is not application traffic
        return _respond(start_response, "200 OK")
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or 2))
    elif path == "/fail":
        return _respond(start_response, "500 Internal Server Error")
    elif path == "/crash":
        SyncWorker.wait = _crashing_wait  # this process only: it was forked before
    elif path == "/kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif path == "/hang":
        time.sleep(60)  # far beyond any --timeout a test sets: the arbiter aborts the worker first
    orders.add(1)
    return _respond(start_response, "200 OK")
