"""Server metrics per worker class, with real gunicorn, real sockets and a slow endpoint (3 s)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time

import gunicorn
import pytest

from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

SLOW = "/slow?3"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def fire(count: int, connect, path: str = SLOW) -> tuple[list[threading.Thread], list[int]]:
    """Start ``count`` concurrent requests in threads; statuses land in the returned list."""
    statuses: list[int] = []

    def one() -> None:
        conn = connect()
        try:
            conn.request("GET", path)
            statuses.append(conn.getresponse().status)
        finally:
            conn.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # pacing: connections arrive one after another, as clients do, not in one burst
    return threads, statuses


def tcp(server):
    return lambda: http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)


def reaches(server, name: str, predicate, timeout: float = 10, **labels) -> float:
    """Wait until metric ``name`` (summed over samples matching ``labels``) satisfies ``predicate``; return it."""

    value = wait_until(
        lambda: server.value(name, **labels),
        timeout,
        what=f"{name}{labels}",
        until=lambda v: v is not None and predicate(v),
    )
    assert value is not None  # until accepts no None
    return value


def test_sync_worker_listener_queues_busy_worker_and_exit_reasons(start_gunicorn, tmp_path):
    """sync, 1 worker: slow requests queue on the TCP and the unix listener; then kill -9 is counted as killed."""
    unix_path = str(tmp_path / "app.sock")
    server = start_gunicorn("slow:app", args=["-w", "1", "-b", f"unix:{unix_path}"])
    tcp_listener = f"http://127.0.0.1:{server.port}"
    unix_listener = f"unix:{unix_path}"
    threads, statuses = fire(5, tcp(server))
    more, more_statuses = fire(5, lambda: UnixHTTPConnection(unix_path, 60))

    assert 3 <= reaches(
        server, "gunicorn_listener_queued_connections", lambda v: v >= 3, gunicorn_listener=tcp_listener
    )
    assert 3 <= reaches(
        server, "gunicorn_listener_queued_connections", lambda v: v >= 3, gunicorn_listener=unix_listener
    )
    assert 0 < server.value("gunicorn_listener_backlog_limit", gunicorn_listener=tcp_listener)
    assert 0 < server.value("gunicorn_listener_backlog_limit", gunicorn_listener=unix_listener)
    # One scrape for the values that belong together: between two requests the worker is idle for an instant, and a
    # report taken then is correct too.
    busy = wait_until(
        server.scrape,
        10,
        what="a busy worker",
        until=lambda scrape: scrape.value("gunicorn_workers", gunicorn_worker_state="busy") == 1,
    )
    assert (0, 1, 1) == (
        busy.value("gunicorn_workers", gunicorn_worker_state="idle"),
        busy.value("http_server_active_requests"),
        busy.value("gunicorn_worker_limit"),
    )

    for thread in threads + more:
        thread.join(60)
    assert [200] * 10 == statuses + more_statuses
    assert 10 == reaches(
        server, "http_server_request_duration_seconds_count", lambda v: v == 10, http_response_status_code="200"
    )
    assert 0 == server.value("gunicorn_listener_queued_connections", gunicorn_listener=tcp_listener)

    [victim] = server.worker_pids()
    os.kill(victim, signal.SIGKILL)
    assert 1 <= reaches(server, "gunicorn_worker_exits_total", lambda v: v >= 1, gunicorn_worker_exit_reason="killed")
    assert 0 == server.value("gunicorn_worker_exits_total", gunicorn_worker_exit_reason="normal")


def test_gthread_thread_pool_and_connections(start_gunicorn):
    """gthread, 1 worker, 2 threads, 6 slow requests: 2 busy threads, the rest queued in the pool."""
    server = start_gunicorn("slow:app", args=["-k", "gthread", "-w", "1", "--threads", "2"])
    threads, statuses = fire(6, tcp(server))
    # all from one report: while the first two requests sleep, 2 threads are busy and the other 4 wait
    full = wait_until(
        server.scrape,
        10,
        what="the pool queue to fill, 3 or 4 queued",
        until=lambda scrape: scrape.value("gunicorn_thread_pool_queue_length") in (3, 4),
    )
    assert 2 == full.value("gunicorn_thread_pool_threads", gunicorn_thread_state="busy")
    assert 2 == full.value("gunicorn_thread_pool_thread_limit")
    assert 5 <= full.value("gunicorn_worker_active_connections")
    assert 2 == full.value("http_server_active_requests")
    assert ["0"] == [s.labels["gunicorn_worker_slot"] for s in full.samples("gunicorn_thread_pool_thread_limit")]
    for thread in threads:
        thread.join(60)
    assert [200] * 6 == statuses


def test_gevent_in_flight_requests_and_connection_limit(start_gunicorn):
    """gevent with --worker-connections 3: 3 requests in flight, connection limit 3."""
    pytest.importorskip("gevent")
    server = start_gunicorn("slow:app", args=["-k", "gevent", "-w", "1", "--worker-connections", "3"])
    threads, statuses = fire(6, tcp(server))
    assert 3 == reaches(server, "http_server_active_requests", lambda v: v == 3)
    assert 3 == server.value("gunicorn_worker_connection_limit")
    for thread in threads:
        thread.join(60)
    assert [200] * 6 == statuses


@pytest.mark.skipif(gunicorn.version_info < (25, 1), reason="gunicorn's asgi worker is stable since 25.1")
def test_asgi_worker_in_flight_requests_and_connections(start_gunicorn):
    """gunicorn's asgi worker: 4 slow requests in flight over 4 open connections."""
    server = start_gunicorn("slow_asgi:app", args=["-k", "asgi", "-w", "1"])
    threads, statuses = fire(4, tcp(server))
    in_flight = wait_until(
        server.scrape, 10, what="4 in flight", until=lambda scrape: scrape.value("http_server_active_requests") == 4
    )
    assert 4 <= in_flight.value("gunicorn_worker_active_connections")
    for thread in threads:
        thread.join(60)
    assert [200] * 4 == statuses


@pytest.mark.skipif(gunicorn.version_info < (24, 0), reason="per-worker reuse_port sockets arrived in gunicorn 24.0")
def test_reuse_port_workers_measure_their_own_listeners(start_gunicorn):
    """--reuse-port, 2 sync workers: each worker reports its own accept queue with its slot."""
    server = start_gunicorn("slow:app", args=["-w", "2", "--reuse-port"])

    def slots() -> set[str | None]:
        return {s.labels.get("gunicorn_worker_slot") for s in server.samples("gunicorn_listener_queued_connections")}

    wait_until(slots, 10, what="both workers to report their listener", until=lambda seen: seen == {"0", "1"})
    threads, statuses = fire(10, tcp(server))
    assert 4 <= reaches(server, "gunicorn_listener_queued_connections", lambda v: v >= 4)
    assert {"0", "1"} == slots()
    for thread in threads:
        thread.join(90)
    assert [200] * 10 == statuses


def test_request_start_header_lands_in_the_queue_time_histogram(start_gunicorn):
    """X-Request-Start: t=<now - 250 ms in µs> is recorded as a wait between 0.25 s and 0.5 s."""
    server = start_gunicorn("slow:app", args=["-w", "1"])
    started_us = int((time.time() - 0.25) * 1_000_000)
    assert 200 == server.get("/", headers={"X-Request-Start": f"t={started_us}"})[0]
    assert 200 == server.get("/", headers={"X-Request-Start": "t=yesterday"})[0]
    reaches(server, "gunicorn_request_queue_duration_seconds_count", lambda v: v == 1)
    assert 0 == server.value("gunicorn_request_queue_duration_seconds_bucket", le="0.1")
    assert 1 == server.value("gunicorn_request_queue_duration_seconds_bucket", le="0.5")
    assert 1 == reaches(server, "otel_gunicorn_request_queue_header_invalid_total", lambda v: v == 1)


# ---------------------------------------------------------------- busy/idle before the first request

IDLE_CLASSES = {
    "sync": ("counting:app", ["-k", "sync"]),
    "gthread": ("counting:app", ["-k", "gthread", "--threads", "2"]),
    # no request hooks: measured around the (WSGI) application
    "tornado": ("counting:app", ["-k", "tornado"]),
}


@pytest.mark.parametrize("worker_class", sorted(IDLE_CLASSES))
def test_a_fresh_server_reports_its_workers_idle_before_any_request(start_gunicorn, worker_class):
    """No request yet: gunicorn_workers says 0 busy and every worker idle as soon as the workers report (before:
    absent until the first request, like a server whose workers never report)."""
    app, args = IDLE_CLASSES[worker_class]
    server = start_gunicorn(app, args=args, workers=2, probe=False)  # /ready would be a request
    assert 2 == server.wait_value("gunicorn_workers", 2, gunicorn_worker_state="idle")
    scrape = server.scrape()
    assert (0, 2) == (
        scrape.value("gunicorn_workers", gunicorn_worker_state="busy"),
        scrape.value("gunicorn_workers", gunicorn_worker_state="idle"),
    )
    assert scrape.value("http_server_active_requests") is None  # no request was measured


def test_a_worker_that_measures_no_requests_reports_no_busy_idle_and_no_concurrency(start_gunicorn):
    """tornado serving a tornado.web.Application (not wrappable): its requests are not measured, so busy/idle and
    the average concurrency are absent, not a made-up 0, after reports and a request."""
    server = start_gunicorn("tornado_native:app", args=["-k", "tornado", "-w", "2"], workers=2)
    assert 200 == server.get("/")[0]
    reaches(server, "otel_gunicorn_channel_reports_total", lambda v: v >= 6, outcome="accepted")
    scrape = server.scrape()
    assert scrape.value("gunicorn_worker_heartbeat_age_seconds") is not None  # the workers do report
    assert (None, None, None) == (
        scrape.value("gunicorn_workers"),
        scrape.value("gunicorn_worker_concurrency"),
        scrape.value("http_server_active_requests"),
    )
