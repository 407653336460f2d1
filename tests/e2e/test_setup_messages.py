"""Set-up mistakes are said once per server, in the arbiter, with what to change: real gunicorn with two workers,
the whole server's output read (arbiter, workers and the OTLP exporter process write to the same log)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness import net, proc
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

MALFORMED = "garbage,service.version=1.2"


@pytest.mark.parametrize("exporter", ["prometheus", "otlp"])
def test_a_malformed_resource_attributes_is_reported_once_per_server(start_gunicorn, start_rotel, exporter):
    """``OTEL_RESOURCE_ATTRIBUTES`` with a pair that is not key=value: one line names it in the whole output (not one
    per process, nor one per ``Resource.create``), and the valid pair still reaches the resource."""
    env = {"OTEL_RESOURCE_ATTRIBUTES": MALFORMED}
    if exporter == "otlp":
        collector = start_rotel()
        env.update(collector.export_env("metrics"))
    server = start_gunicorn("counting:app", args=["-w", "2"], env=env, wait_metrics=exporter == "prometheus")
    wait_until(server.booted, 15, what="2 workers", until=lambda booted: booted == 2)
    assert [200] * 4 == server.load(4)
    if exporter == "otlp":
        points = wait_until(lambda: collector.points("app.requests"), 15, what="a push of the merged metrics")
        assert "1.2" == points[-1].resource.get("service.version")
    else:
        assert server.value("target_info", service_version="1.2") == 1
    server.stop()
    lines = [line for line in server.log().splitlines() if "resource attribute" in line or "RESOURCE_ATTR" in line]
    assert 1 == len(lines), lines
    assert "otel_gunicorn: OTEL_RESOURCE_ATTRIBUTES='garbage,service.version=1.2' is not valid" in lines[0]


def test_a_metrics_port_taken_by_the_arbiter_itself_is_said_once_without_retrying(start_gunicorn):
    """The configuration starts prometheus_client's server on the metrics port in the arbiter: one error names this
    process and its pid and says no retry can free the port; nothing retries (requests are still served)."""
    server = start_gunicorn("counting:app", config="python:taking_the_metrics_port", wait_metrics=False)
    expected = f"is taken by this very process (pid {server.pid}, the gunicorn arbiter)"
    wait_until(server.log, 10, what="the error naming the arbiter", until=lambda log: expected in log)
    time.sleep(1.5)  # a retry would come within a second
    log = server.log()
    assert (1, 0, 200) == (log.count("no Prometheus endpoint"), log.count("retrying"), server.get()[0])


def test_a_metrics_port_held_by_another_process_names_it(start_gunicorn, tmp_path):
    """The metrics port is held by another process: the warning names its pid and command, and retries."""
    port = net.free_port()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('{net.LOOPBACK}', {port})); s.listen(); time.sleep(60)",
        ]
    )
    try:
        wait_until(
            lambda: proc.accept_queue(port), 10, what="the holder to listen", until=lambda queue: queue is not None
        )
        server = start_gunicorn("counting:app", env={"OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}, wait_metrics=False)
        wait_until(server.log, 10, what="the warning", until=lambda log: "retrying in the background" in log)
        assert f"held by pid {holder.pid} (python" in server.log()
    finally:
        holder.kill()
        holder.wait()


def test_a_base_endpoint_without_scheme_and_with_a_signal_path_still_delivers_spans_and_logs(
    start_gunicorn, start_rotel
):
    """``OTEL_EXPORTER_OTLP_ENDPOINT=127.0.0.1:PORT/v1/traces`` (no scheme, a signal's path in the base URL) with
    spans and logs exported from two workers: both reach the collector at ``/v1/traces`` and ``/v1/logs``; the
    arbiter says each correction once in the whole output, and where each signal goes."""
    collector = start_rotel()
    base = f"{net.LOOPBACK}:{collector.http_port}/v1/traces"
    env = {**collector.export_env("traces", "logs"), "OTEL_EXPORTER_OTLP_ENDPOINT": base}
    server = start_gunicorn("logging_app:app", args=["-w", "2"], env=env)
    wait_until(server.booted, 15, what="2 workers", until=lambda booted: booted == 2)
    assert [200] * 6 == server.load(6)
    wait_until(
        lambda: [s for s in collector.spans() if s.kind],
        15,
        what="the spans at the collector",
        until=lambda spans: len(spans) >= 6,
    )
    wait_until(collector.log_records, 15, what="log records at the collector")
    server.stop()
    log = server.log()
    assert (1, 1, 1) == (
        log.count(f"OTEL_EXPORTER_OTLP_ENDPOINT='{base}' has no scheme"),
        log.count("is a base URL, to which the exporter adds /v1/traces"),
        log.count("is a base URL, to which the exporter adds /v1/logs"),
    )
    http = f"http://{net.LOOPBACK}:{collector.http_port}"
    assert (1, 1) == (
        log.count(f"the workers export their spans to {http}/v1/traces (OTLP http/protobuf)"),
        log.count(f"the workers export their log records to {http}/v1/logs (OTLP http/protobuf)"),
    )
