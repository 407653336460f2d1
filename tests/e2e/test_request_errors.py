"""Failed requests carry ``error.type`` in http.server.request.duration, so an error ratio sees every one of them."""

from __future__ import annotations

import http.client

import pytest

from harness import net

pytestmark = pytest.mark.e2e

DURATION_COUNT = "http_server_request_duration_seconds_count"


def test_a_request_cut_off_by_timeout_is_a_timeout_error(start_gunicorn):
    """The arbiter aborts a sync worker stuck past --timeout: its request is recorded with error.type="timeout" and
    the status the client got, the 500 of gunicorn's error page."""
    server = start_gunicorn("slow:app", args=["-w", "1", "--timeout", "2"])
    connection = http.client.HTTPConnection(net.LOOPBACK, server.port, timeout=30)
    try:
        connection.request("GET", "/slow?20")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert 500 == response.status
    assert "WORKER TIMEOUT" in server.log()
    server.wait_value(DURATION_COUNT, 1, timeout=15, error_type="timeout", http_response_status_code="500")
    [timed_out] = [s for s in server.samples(DURATION_COUNT) if s.labels.get("error_type") == "timeout"]
    assert "GET" == timed_out.labels["http_request_method"]


def test_a_5xx_response_is_an_error_typed_by_its_status(start_gunicorn):
    """Semantic conventions: a server's 5xx response has error.type set to its status code; a 2xx has none."""
    server = start_gunicorn("slow:app", args=["-w", "1"])
    assert 500 == server.get("/fail")[0]
    assert 200 == server.get("/ok")[0]
    server.wait_value(DURATION_COUNT, 1, error_type="500", http_response_status_code="500")
    ok = [s for s in server.samples(DURATION_COUNT) if s.labels.get("http_response_status_code") == "200"]
    assert ok and all(not s.labels.get("error_type") for s in ok)  # the exporter fills absent labels with ""
