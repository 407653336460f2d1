"""Request spans and trace-correlated logs, with python:otel_gunicorn.conf and a real collector (Rotel)."""

from __future__ import annotations

import json
import re

import gunicorn
import pytest

from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def json_records(server) -> list[dict]:
    records = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def wait_records(server, predicate, what: str) -> list[dict]:
    return wait_until(lambda: [r for r in json_records(server) if predicate(r)], 10, what=what)


WORKERS = {
    "sync": ("logging_app:app", ["-k", "sync"]),
    "gthread": ("logging_app:app", ["-k", "gthread", "--threads", "2"]),
    "asgi": ("logging_app:asgi_app", ["-k", "asgi"]),
}


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_request_span_continues_the_callers_trace_and_reaches_the_logs(start_gunicorn, start_rotel, worker):
    """traceparent in: the app's log line, the access line and the exported server span share the caller's trace."""
    collector = start_rotel()
    env = {**collector.export_env("traces"), "OTEL_GUNICORN_LOG_FORMAT": "json"}
    if worker == "asgi" and gunicorn.version_info < (25, 1):
        pytest.skip("gunicorn's asgi worker is stable since 25.1")
    app, args = WORKERS[worker]
    server = start_gunicorn(app, args=["-w", "1", "--access-logfile", "-", *args], env=env)
    assert 200 == server.get("/hello", headers={"traceparent": TRACEPARENT})[0]

    [app_line] = wait_records(server, lambda r: r.get("event") == "in.app", "the app's log line")
    assert TRACE_ID == app_line["trace_id"]
    assert re.fullmatch("[0-9a-f]{16}", app_line["span_id"])
    assert PARENT_ID != app_line["span_id"]
    [access] = wait_records(
        server, lambda r: r.get("logger") == "gunicorn.access" and r.get("path") == "/hello", "the access line"
    )
    assert (TRACE_ID, app_line["span_id"]) == (access["trace_id"], access["span_id"])

    spans = wait_until(lambda: [s for s in collector.spans() if s.trace_id == TRACE_ID], 15, what="the span")
    [span] = spans
    assert (PARENT_ID, app_line["span_id"], "SPAN_KIND_SERVER") == (span.parent_id, span.span_id, span.kind)
    assert "200" in span.attributes.get("http.response.status_code", "")


def test_no_traceparent_and_tracing_off_still_correlates_the_requests_lines(start_gunicorn):
    """Tracing off (the default) and no traceparent: the request's app line and access line share a trace id of the
    request's own, flagged not sampled, and nothing fails."""
    server = start_gunicorn(
        "logging_app:app", args=["-w", "1", "--access-logfile", "-"], env={"OTEL_GUNICORN_LOG_FORMAT": "json"}
    )
    assert 200 == server.get("/plain")[0]
    [app_line] = wait_records(server, lambda r: r.get("event") == "in.app", "the app's log line")
    [access] = wait_records(server, lambda r: r.get("path") == "/plain", "the access line")
    assert app_line["trace_id"] == access["trace_id"] and app_line["span_id"] == access["span_id"]
    assert "00" == app_line["trace_flags"]
    assert 0 == app_line["gunicorn.worker.slot"]  # set by otel_gunicorn's post_fork


def test_tracing_off_still_correlates_an_incoming_traceparent(start_gunicorn):
    """With no span exporter, a request arriving with a traceparent still logs the caller's trace id."""
    server = start_gunicorn("logging_app:app", args=["-w", "1"], env={"OTEL_GUNICORN_LOG_FORMAT": "json"})
    assert 200 == server.get("/hello", headers={"traceparent": TRACEPARENT})[0]
    [app_line] = wait_records(server, lambda r: r.get("event") == "in.app", "the app's log line")
    assert TRACE_ID == app_line["trace_id"]


def test_logs_exporter_sends_records_with_their_trace(start_gunicorn, start_rotel):
    """OTEL_LOGS_EXPORTER=otlp: the app's record reaches the collector with the request's trace id."""
    collector = start_rotel()
    server = start_gunicorn("logging_app:app", args=["-w", "1"], env=collector.export_env("logs"))
    assert 200 == server.get("/hello", headers={"traceparent": TRACEPARENT})[0]
    wait_until(
        collector.log,
        15,
        what=f"the log record, 'in.app' with trace {TRACE_ID}",
        until=lambda log: "in.app" in log and TRACE_ID in log,
    )


def test_spans_still_flow_with_metrics_off(start_gunicorn, start_rotel):
    """OTEL_METRICS_EXPORTER=none turns off metrics only: request spans still reach the collector."""
    collector = start_rotel()
    env = {**collector.export_env("traces"), "OTEL_METRICS_EXPORTER": "none"}
    server = start_gunicorn("logging_app:app", args=["-w", "1"], env=env, wait_metrics=False)
    assert 200 == server.get("/hello", headers={"traceparent": TRACEPARENT})[0]
    [span] = wait_until(lambda: [s for s in collector.spans() if s.trace_id == TRACE_ID], 15, what="the span")
    assert (PARENT_ID, "SPAN_KIND_SERVER") == (span.parent_id, span.kind)
