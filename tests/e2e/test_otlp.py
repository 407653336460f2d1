"""OTLP push to a real collector (Rotel): one exact stream per server, over http/protobuf and grpc."""

from __future__ import annotations

import time

import pytest

from tests.e2e.servers import wait_until

pytestmark = pytest.mark.e2e

PROTOCOLS = ["http/protobuf", "grpc"]


def otlp_env(collector, protocol: str, **extra: str) -> dict[str, str]:
    return {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint(protocol),
        "OTEL_SERVICE_NAME": "shop",
        **extra,
    }


def last_value(collector, metric: str) -> float | None:
    points = collector.points(metric)
    return points[-1].value if points else None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collector_receives_exact_counts_under_one_resource(start_gunicorn, start_rotel, protocol):
    """200 requests over 3 workers arrive as exactly 200, with the server's service.name and one instance id."""
    collector = start_rotel()
    server = start_gunicorn(args=["-w", "3"], env=otlp_env(collector, protocol), wait_metrics=False)
    assert [200] * 200 == server.load(200)
    wait_until(lambda: last_value(collector, "app.requests") == 200, 15, what="the collector to see 200")
    assert collector.points("gunicorn.listener.queued_connections"), "listener queue metric missing"
    points = collector.points("app.requests")
    assert {"shop"} == {p.resource["service.name"] for p in points}
    assert 1 == len({p.resource["service.instance.id"] for p in collector.points("app.requests")})
    assert {str(server.process.pid)} == {p.resource["process.pid"] for p in points}


def test_prometheus_and_otlp_together(start_gunicorn, start_rotel):
    """OTEL_METRICS_EXPORTER=prometheus,otlp serves the endpoint and pushes the same exact totals."""
    collector = start_rotel()
    server = start_gunicorn(
        args=["-w", "2"], env=otlp_env(collector, "http/protobuf", OTEL_METRICS_EXPORTER="prometheus,otlp")
    )
    assert [200] * 50 == server.load(50)
    server.wait_value("app_requests_total", 50)
    wait_until(lambda: last_value(collector, "app.requests") == 50, 15, what="the collector to see 50")


def test_unreachable_collector_never_slows_requests(start_gunicorn, start_rotel, tmp_path):
    """Collector endpoint on a closed port: 300 requests all succeed promptly, no worker timeout, gunicorn alive."""
    from tests.e2e.servers import free_port

    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    server = start_gunicorn(args=["-w", "2", "--timeout", "10"], env=env, wait_metrics=False)
    started = time.monotonic()
    assert [200] * 300 == server.load(300)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"300 requests took {elapsed:.1f} s"
    time.sleep(3)
    assert server.process.poll() is None
    log = server.log()
    assert "WORKER TIMEOUT" not in log
    assert 1 == log.count("OTLP export failing"), log


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_export_resumes_after_a_collector_outage(start_gunicorn, start_rotel, protocol):
    """Stopping the collector mid-run fails no request; once it is back the exact total arrives."""
    collector = start_rotel()
    ports = {"grpc_port": collector.grpc_port, "http_port": collector.http_port}
    server = start_gunicorn(
        args=["-w", "2"], env=otlp_env(collector, protocol, OTEL_EXPORTER_OTLP_TIMEOUT="2"), wait_metrics=False
    )
    assert [200] * 50 == server.load(50)
    wait_until(lambda: last_value(collector, "app.requests") == 50, 15, what="50 before the outage")
    collector.stop()
    assert [200] * 50 == server.load(50)
    time.sleep(2)
    revived = start_rotel(**ports)
    assert [200] * 50 == server.load(50)
    wait_until(lambda: last_value(revived, "app.requests") == 150, 40, what="150 after the outage")
    # The SDK exporter retries within OTEL_EXPORTER_OTLP_TIMEOUT, so a short outage may pass unnoticed; when a failure
    # was logged, its end must be logged too.
    if "OTLP export failing" in server.log():
        wait_until(lambda: "OTLP export recovered" in server.log(), 10, what="the recovery to be logged")


def test_grpc_export_survives_200_worker_recycles(start_gunicorn, start_rotel):
    """grpc export while --max-requests recycles 200 workers: no hang, exact count at the collector."""
    collector = start_rotel()
    server = start_gunicorn(
        args=["-w", "2", "--max-requests", "2"], env=otlp_env(collector, "grpc"), wait_metrics=False
    )
    statuses = server.load(400, concurrency=2)
    assert [200] * 400 == statuses
    wait_until(lambda: last_value(collector, "app.requests") == 400, 30, what="the collector to see 400")
    assert 190 <= server.log().count("Booting worker")
