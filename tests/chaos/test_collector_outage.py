"""OTLP push while the collector goes away for ~3 s under steady traffic: nothing fails, the exact total arrives."""

from __future__ import annotations

import time

import pytest

from harness.waiting import wait_until
from tests.chaos.conftest import Traffic

pytestmark = pytest.mark.chaos

OUTAGE_S = 3.0
#: after traffic stops, the collector must receive the exact total within this
ARRIVAL_BOUND_S = 30.0


def test_collector_outage_mid_run(start_gunicorn, start_rotel, figures):
    collector = start_rotel()
    ports = {"grpc_port": collector.grpc_port, "http_port": collector.http_port}
    env = {**collector.export_env("metrics"), "OTEL_METRIC_EXPORT_INTERVAL": "500"}
    server = start_gunicorn(args=["-w", "2"], env=env, wait_metrics=False)
    figures.update(outage_s=OUTAGE_S, protocol="http/protobuf", export_interval_ms=500)

    with Traffic(server.port, max_requests=10_000, max_seconds=60, concurrency=2, delay=0.01) as traffic:
        first = wait_until(lambda: collector.last_value("app.requests"), 15, what="the first push")
        # steady state before the outage: a later push carries the traffic served since the first
        before_outage = wait_until(
            lambda: collector.last_value("app.requests"),
            15,
            what=f"a second push, above {first}",
            until=lambda value: value is not None and value > first,
        )
        down_at = time.monotonic()
        collector.stop()
        time.sleep(OUTAGE_S)  # the outage lasts a fixed time, under traffic
        revived = start_rotel(**ports)
        up_at = time.monotonic()
        first_after = wait_until(
            lambda: revived.last_value("app.requests"), ARRIVAL_BOUND_S, interval=0.1, what="a push after the outage"
        )
        first_push_after_s = time.monotonic() - up_at
        # traffic goes on after the outage: a later push carries requests served since the first one after it
        wait_until(
            lambda: revived.last_value("app.requests"),
            15,
            what=f"a second push after the outage, above {first_after}",
            until=lambda value: (value or 0) > first_after,
        )
        served = traffic.stop()
    stopped_at = time.monotonic()
    wait_until(
        lambda: revived.last_value("app.requests"),
        ARRIVAL_BOUND_S,
        what=f"the collector to see {served}",
        until=lambda value: value == served,
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
