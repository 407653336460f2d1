"""An application that already uses opentelemetry-instrumentation-wsgi: one server span, one valid exposition."""

from __future__ import annotations

import pytest

from harness.prometheus import promtool_check
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

pytest.importorskip("opentelemetry.instrumentation.wsgi")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_no_second_server_span(start_gunicorn, start_rotel):
    """With the WSGI middleware as well, a request yields one SERVER span; the middleware's is its internal child."""
    collector = start_rotel()
    server = start_gunicorn("instrumented:app", args=["-w", "1"], env=collector.export_env("traces"))
    assert 200 == server.get("/hello", headers={"traceparent": TRACEPARENT})[0]
    spans = wait_until(
        lambda: [s for s in collector.spans() if s.trace_id == TRACE_ID],
        15,
        what="2 spans of the trace",
        until=lambda spans: len(spans) >= 2,
    )
    kinds = sorted(s.kind for s in spans)
    assert ["SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER"] == kinds
    [ours] = [s for s in spans if s.kind == "SPAN_KIND_SERVER"]
    [theirs] = [s for s in spans if s.kind == "SPAN_KIND_INTERNAL"]
    assert ours.span_id == theirs.parent_id


@pytest.mark.parametrize("semconv", ["", "http", "http/dup"])
def test_same_metric_names_from_two_scopes_stay_one_valid_family(start_gunicorn, start_prometheus, semconv):
    """The middleware's http.server.* metrics beside ours: promtool and the Prometheus server accept the scrape."""
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": semconv} if semconv else {}
    server = start_gunicorn("instrumented:app", args=["-w", "2"], env=env)
    assert [200] * 20 == server.load(20, path="/hello")
    wait_until(
        lambda: {s.labels.get("otel_scope_name") for s in server.samples("http_server_active_requests")},
        10,
        what="active requests from both scopes",
        until=lambda scopes: len(scopes) == 2,
    )
    result = promtool_check(server.scrape_text())
    # The old-semconv instrumentation records http.server.duration in milliseconds, which promtool's linter flags;
    # that is the instrumentation's own choice. Anything else — a second HELP line, a parse error — is ours.
    problems = [line for line in (result.stdout + result.stderr).splitlines() if 'use base unit "seconds"' not in line]
    assert [] == problems
    prometheus = start_prometheus([f"127.0.0.1:{server.metrics_port}"])
    up = wait_until(lambda: prometheus.query('up{job="gunicorn"}'), 20, what="a scrape")
    assert ["1"] == [r["value"][1] for r in up]
