"""OTLP push while the collector goes away for ~3 s under steady traffic: nothing fails, the exact total arrives."""

from __future__ import annotations

import time

import pytest

from tests.chaos.conftest import Traffic, wait_until

pytestmark = pytest.mark.chaos

OUTAGE_S = 3.0
#: after traffic stops, the collector must receive the exact total within this
ARRIVAL_BOUND_S = 30.0


def last_value(collector, metric: str) -> float | None:
    points = collector.points(metric)
    return points[-1].value if points else None


def test_collector_outage_mid_run(start_gunicorn, start_rotel, figures):
    collector = start_rotel()
    ports = {"grpc_port": collector.grpc_port, "http_port": collector.http_port}
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint("http/protobuf"),
        "OTEL_GUNICORN_METRICS_INTERVAL": "0.5",
    }
    server = start_gunicorn(args=["-w", "2"], env=env, wait_metrics=False)
    figures.update(outage_s=OUTAGE_S, protocol="http/protobuf", export_interval_ms=500)

    with Traffic(server.port, max_requests=10_000, max_seconds=60, concurrency=2, delay=0.01) as traffic:
        wait_until(lambda: (last_value(collector, "app.requests") or 0) > 0, 15, what="the first push")
        time.sleep(1.0)
        before_outage = last_value(collector, "app.requests")
        down_at = time.monotonic()
        collector.stop()
        time.sleep(OUTAGE_S)
        revived = start_rotel(**ports)
        up_at = time.monotonic()
        first_after = wait_until(
            lambda: last_value(revived, "app.requests"), ARRIVAL_BOUND_S, interval=0.1, what="a push after the outage"
        )
        first_push_after_s = time.monotonic() - up_at
        time.sleep(1.0)
        served = traffic.stop()
    stopped_at = time.monotonic()
    wait_until(
        lambda: last_value(revived, "app.requests") == served,
        ARRIVAL_BOUND_S,
        what=f"the collector to see {served}",
    )
    exact_after_s = time.monotonic() - stopped_at

    log = server.log()
    figures.update(
        requests_200=served,
        requests_failed=len(traffic.failures),
        request_failures=sorted(set(traffic.failures))[:5],
        value_before_outage=before_outage,
        first_value_after_outage=first_after,
        outage_measured_s=round(up_at - down_at, 2),
        first_push_after_restart_s=round(first_push_after_s, 2),
        exact_total_after_traffic_stop_s=round(exact_after_s, 2),
        worker_timeouts=log.count("WORKER TIMEOUT"),
        export_failing_logged=log.count("OTLP export failing"),
        export_recovered_logged=log.count("OTLP export recovered"),
    )
    assert server.process.poll() is None, "the arbiter died"
    assert [] == traffic.failures
    assert 0 == log.count("WORKER TIMEOUT"), log
