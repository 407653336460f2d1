"""Set-up mistakes are said once per server, in the arbiter, with what to change: real gunicorn with two workers,
the whole server's output read (arbiter, workers and the OTLP exporter process write to the same log)."""

from __future__ import annotations

import pytest

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
    wait_until(lambda: server.booted() == 2, 15, what="2 workers")
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
