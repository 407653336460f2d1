"""Test application with a dirty app (gunicorn >= 25): each HTTP request calls the dirty pool, whose app records with
the plain OpenTelemetry API, as a user's dirty app would.

Serve it with ``--dirty-app dirty_calls:CountingApp``. Routes: ``/count`` (a call that adds 1 to ``app.dirty.calls``),
``/hold?SECONDS`` (a call that sleeps, to see a busy dirty worker or a timeout), ``/impostor`` (the HTTP worker forks a
child that dials the arbiter's channel and claims 1000 calls: a grandchild of the arbiter that is no dirty worker).
"""

import os
import time

from gunicorn.dirty import DirtyApp, get_dirty_client
from opentelemetry import metrics

APP = "dirty_calls:CountingApp"

meter = metrics.get_meter("tests.dirty_calls", "1.0")
calls = meter.create_counter("app.dirty.calls", unit="{call}", description="Calls the dirty app served.")
_in_dirty_worker = False


def _pid(_options):
    if _in_dirty_worker:  # the HTTP workers import this module too: only dirty workers observe
        yield metrics.Observation(os.getpid())


meter.create_observable_gauge("app.dirty.pid", [_pid], description="The dirty worker's pid: one series per slot.")


class CountingApp(DirtyApp):
    """Runs in the dirty workers."""

    def init(self):
        global _in_dirty_worker
        _in_dirty_worker = True

    def count(self):
        calls.add(1)
        return os.getpid()

    def hold(self, seconds):
        time.sleep(float(seconds))
        return os.getpid()


def _respond(start_response, status, body):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _impostor():
    """In a child of this HTTP worker: report to the arbiter's channel as if it were a dirty worker."""
    from otel_gunicorn import _handoff
    from otel_gunicorn._snapshot import Kind, MetricMeta, payload_from_snapshot
    from otel_gunicorn._wire import FrameKind, encode_frame

    claim = {MetricMeta("tests.dirty_calls", "1.0", "", "app.dirty.calls", "", "{call}", Kind.COUNTER): {(): 1000}}
    pid = os.fork()
    if pid == 0:
        import socket

        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(_handoff.dirty_link().channel_path)
                sock.sendall(encode_frame(FrameKind.SNAPSHOT, payload_from_snapshot(claim)))
                sock.recv(1)  # until the arbiter closes the connection
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def app(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/ready":  # the test harness's readiness probe is not application traffic
        return _respond(start_response, "200 OK", b"")
    if path == "/count":
        pid = get_dirty_client().execute(APP, "count")
    elif path == "/hold":
        pid = get_dirty_client().execute(APP, "hold", float(environ.get("QUERY_STRING") or 1))
    elif path == "/impostor":
        pid = _impostor()
    else:
        return _respond(start_response, "404 Not Found", b"")
    return _respond(start_response, "200 OK", b"%d\n" % pid)
