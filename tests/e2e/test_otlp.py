"""OTLP push to a real collector (Rotel): one exact stream per server, over http/protobuf and grpc."""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from harness import net
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

PROTOCOLS = ["http/protobuf", "grpc"]


class Resetting:
    """An OTLP/HTTP collector that never answers: it reads each request, then resets the connection, so every export
    fails on its connection as against a closed port. Each export sends a newer snapshot and its retries the same
    bytes again, so the distinct request bodies it read are the exports tried."""

    def __init__(self) -> None:
        self._listener = socket.create_server((net.LOOPBACK, 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.bodies: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def exports(self) -> set[bytes]:
        """The distinct request bodies read so far."""
        return set(self.bodies)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError, http.client.HTTPException), conn.makefile("rb") as stream:
                    stream.readline()  # the request line
                    length = int(http.client.parse_headers(stream).get("Content-Length", 0))
                    self.bodies.append(stream.read(length))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close: a reset

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def resetting() -> Iterator[Resetting]:
    collector = Resetting()
    yield collector
    collector.close()


def otlp_env(collector, protocol: str, **extra: str) -> dict[str, str]:
    return {**collector.export_env("metrics", protocol=protocol), "OTEL_SERVICE_NAME": "shop", **extra}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_receives_exact_counts_under_one_resource(start_gunicorn, start_rotel, protocol):
    """200 requests over 3 workers arrive as exactly 200, with the server's service.name and one instance id."""
    collector = start_rotel()
    server = start_gunicorn(args=["-w", "3"], env=otlp_env(collector, protocol), wait_metrics=False)
    assert [200] * 200 == server.load(200)
    wait_until(
        lambda: collector.last_value("app.requests"),
        15,
        what="the collector to see 200",
        until=lambda total: total == 200,
    )
    assert collector.points("gunicorn.listener.queued_connections"), "listener queue metric missing"
    points = collector.points("app.requests")
    assert {"shop"} == {p.resource["service.name"] for p in points}
    assert 1 == len({p.resource["service.instance.id"] for p in collector.points("app.requests")})
    assert {str(server.pid)} == {p.resource["process.pid"] for p in points}


def test_prometheus_and_otlp_together(start_gunicorn, start_rotel):
    """OTEL_METRICS_EXPORTER=prometheus,otlp serves the endpoint and pushes the same exact totals."""
    collector = start_rotel()
    server = start_gunicorn(
        args=["-w", "2"], env=otlp_env(collector, "http/protobuf", OTEL_METRICS_EXPORTER="prometheus,otlp")
    )
    assert [200] * 50 == server.load(50)
    server.wait_value("app_requests_total", 50)
    wait_until(
        lambda: collector.last_value("app.requests"),
        15,
        what="the collector to see 50",
        until=lambda total: total == 50,
    )


def test_unreachable_collector_never_slows_requests(start_gunicorn, resetting):
    """A collector that resets every connection: 300 requests all succeed promptly, and while exports keep failing
    there is one line about it, no worker timeout, gunicorn alive."""
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{net.LOOPBACK}:{resetting.port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    server = start_gunicorn(args=["-w", "2", "--timeout", "10"], env=env, wait_metrics=False)
    started = time.monotonic()
    assert [200] * 300 == server.load(300)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"300 requests took {elapsed:.1f} s"
    wait_until(
        server.log,
        15,
        what="the failing export to be logged: 'OTLP export failing'",
        until=lambda log: "OTLP export failing" in log,
    )
    # Hold the outage until two more exports were tried: the first of them failed (with all its retries) before the
    # second began, and must not have been logged again.
    failed = resetting.exports()
    wait_until(lambda: len(resetting.exports() - failed), 20, until=lambda new: new >= 2, what="two more exports")
    assert server.process.poll() is None
    log = server.log()
    assert "WORKER TIMEOUT" not in log
    assert 1 == log.count("OTLP export failing"), log


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_export_resumes_after_a_collector_outage(start_gunicorn, start_rotel, protocol):
    """Stopping the collector mid-run fails no request, is logged once, and so is its end; the exact total arrives."""
    collector = start_rotel()
    ports = {"grpc_port": collector.grpc_port, "http_port": collector.http_port}
    server = start_gunicorn(
        args=["-w", "2"], env=otlp_env(collector, protocol, OTEL_EXPORTER_OTLP_TIMEOUT="2"), wait_metrics=False
    )
    assert [200] * 50 == server.load(50)
    wait_until(
        lambda: collector.last_value("app.requests"),
        15,
        what="50 before the outage",
        until=lambda total: total == 50,
    )
    assert 0 == server.log().count("OTLP export failing"), server.log()
    collector.stop()
    assert [200] * 50 == server.load(50)
    # The SDK exporter retries within OTEL_EXPORTER_OTLP_TIMEOUT (2 s), so a short outage may pass unnoticed: the
    # collector stays down until an export has failed for good, which every export does after at most 2 s + 1 s.
    wait_until(
        server.log,
        20,
        what="the outage to be logged: 'OTLP export failing'",
        until=lambda log: "OTLP export failing" in log,
    )
    revived = start_rotel(**ports)
    assert [200] * 50 == server.load(50)
    wait_until(
        lambda: revived.last_value("app.requests"),
        40,
        what="150 after the outage",
        until=lambda total: total == 150,
    )
    wait_until(
        server.log,
        10,
        what="the recovery to be logged: 'OTLP export recovered'",
        until=lambda log: "OTLP export recovered" in log,
    )
    log = server.log()
    assert (1, 1) == (log.count("OTLP export failing"), log.count("OTLP export recovered")), log


def test_grpc_export_survives_200_worker_recycles(start_gunicorn, start_rotel):
    """grpc export while --max-requests recycles 200 workers: no hang, exact count at the collector."""
    collector = start_rotel()
    server = start_gunicorn(
        args=["-w", "2", "--max-requests", "2"], env=otlp_env(collector, "grpc"), wait_metrics=False
    )
    statuses = server.load(400, concurrency=2)
    assert [200] * 400 == statuses
    wait_until(
        lambda: collector.last_value("app.requests"),
        30,
        what="the collector to see 400",
        until=lambda total: total == 400,
    )
    assert 190 <= server.log().count("Booting worker")
