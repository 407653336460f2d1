"""Why it is slow, why it timed out: the line naming the code a stuck or slow request was running, with its trace.

Real gunicorn, JSON logs: a sync worker aborted for ``--timeout`` logs, before it dies, one line per request it was
serving with the stack and the caller's trace id (and, tracing on, the span gets an ``exception`` event); with
``OTEL_GUNICORN_SLOW_REQUEST_SECONDS`` gthread, gevent and asgi workers log each slow request once while it still
runs, and ``gunicorn_requests_slow_total`` counts it; a graceful stop about to cut requests off names them. Also
run on the oldest gunicorn (``make test-oldest``): the abort path and the workers' stacks are gunicorn's internals.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import secrets
import signal
import time
from typing import Any

import gunicorn
import pytest

from harness.waiting import wait_until
from tests.e2e.json_log import json_lines

pytestmark = pytest.mark.e2e

JSON = {"OTEL_GUNICORN_LOG_FORMAT": "json"}
SLOW = {**JSON, "OTEL_GUNICORN_SLOW_REQUEST_SECONDS": "1"}
SLOW_TOTAL = "gunicorn_requests_slow_total"


def traceparent() -> tuple[str, dict[str, str]]:
    """A new sampled trace: its id, and the header that carries it."""
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


def lines(server: Any, reason: str) -> list[dict]:
    """The stack lines of ``reason`` (``slow``, ``timeout``, ``graceful_timeout``) in the server's log so far."""
    return [r for r in json_lines(server.log()) if r.get("reason") == reason and "stack" in r]


def at(line: dict) -> float:
    """A line's timestamp (UTC ISO 8601, as the JSON format writes it) in seconds since the epoch."""
    return datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def names(line: dict, function: str) -> bool:
    return any(frame.endswith(f" {function}") for frame in line["stack"])


def test_a_worker_timeout_names_the_stuck_function_with_the_callers_trace(start_gunicorn):
    """sync, --timeout 2, a sampled traceparent into stuck_in_here(): within the timeout + 2 s one JSON line names
    stuck_in_here and carries that trace id; gunicorn's own traceback of the request (no trace id) is not a second
    line; with tracing on, the request's span ends in error with an ``exception`` event holding the same stack."""
    server = start_gunicorn(
        "stuck:app", args=["-w", "1", "--timeout", "2"], env={**JSON, "OTEL_TRACES_EXPORTER": "console"}
    )
    trace_id, headers = traceparent()
    sent = time.time()
    status, _body = server.get("/stuck", headers=headers, timeout=30)
    assert 500 == status  # gunicorn's error page: the worker was aborted
    [line] = wait_until(
        lambda: lines(server, "timeout"), 15, what="the timeout line", until=lambda found: len(found) >= 1
    )
    assert (trace_id, "GET", "/stuck", 2.0) == (line["trace_id"], line["method"], line["path"], line["limit"])
    assert names(line, "stuck_in_here") and "stuck_in_here" in line["event"]
    assert ("error", "thread") == (line["level"], line["stack_of"])
    assert at(line) <= sent + 2 + 2, f"logged {at(line) - sent:.2f} s after the request"
    records = json_lines(server.log())
    assert not [r for r in records if str(r.get("event", "")).startswith("Error handling request")]

    def timed_out_span() -> list[dict]:
        return [r for r in json_lines(server.log()) if r.get("context", {}).get("trace_id") == f"0x{trace_id}"]

    [span] = wait_until(timed_out_span, 15, what="the request's span", until=lambda spans: len(spans) >= 1)
    [event] = span["events"]
    assert ("exception", "TimeoutError") == (event["name"], event["attributes"]["exception.type"])
    assert "stuck_in_here" in event["attributes"]["exception.stacktrace"]
    assert ("ERROR", "timeout") == (span["status"]["status_code"], span["attributes"]["error.type"])


@pytest.mark.parametrize(
    ("worker", "app"),
    [
        (["-k", "gthread", "--threads", "4"], "stuck:app"),
        (["-k", "gevent"], "stuck:app"),
        pytest.param(
            ["-k", "asgi"],
            "stuck_asgi:app",
            marks=pytest.mark.skipif(gunicorn.version_info < (25, 1), reason="gunicorn's asgi worker: 25.1 and later"),
        ),
    ],
    ids=["gthread", "gevent", "asgi"],
)
def test_a_slow_request_gets_one_line_while_it_runs_and_is_counted(start_gunicorn, worker, app):
    """OTEL_GUNICORN_SLOW_REQUEST_SECONDS=1, a 3 s request in slow_in_here() beside fast ones: exactly one line,
    naming slow_in_here, with the request's trace id, timestamped before the response completed; the fast requests
    none; gunicorn_requests_slow_total counts it."""
    server = start_gunicorn(app, args=["-w", "1", *worker], env=SLOW)
    trace_id, headers = traceparent()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(lambda: (server.get("/slow?3", headers=headers, timeout=30), time.time()))
        fast = pool.submit(server.load, 10, 2)
        (status, _body), completed = slow.result()
        assert 200 == status and [200] * 10 == fast.result()
    server.wait_value(SLOW_TOTAL, 1)
    [line] = lines(server, "slow")
    assert (trace_id, "/slow", "warning") == (line["trace_id"], line["path"], line["level"])
    assert names(line, "slow_in_here") and "slow_in_here" in line["event"]
    assert at(line) < completed, "logged while the request still ran"
    assert 1.0 <= line["elapsed"] < 3.0
    if "asgi" in worker:
        blocked_loop(server)


def blocked_loop(server: Any) -> None:
    """asgi: a request that blocks the event loop itself is read on the loop's thread, and the line says so."""
    assert 200 == server.get("/block?2", timeout=30)[0]
    server.wait_value(SLOW_TOTAL, 2)
    [line] = [found for found in lines(server, "slow") if found["path"] == "/block"]
    assert "blocked_loop" == line["stack_of"]
    assert names(line, "blocking_the_loop_in_here")


def test_a_graceful_stop_names_the_requests_it_is_about_to_cut_off(start_gunicorn):
    """SIGTERM with a request in slow_in_here() that outlasts --graceful-timeout 3 (sync: the arbiter kills the
    worker then): before the cut, and not before the last report ahead of it, a line names the request and the
    function."""
    server = start_gunicorn("stuck:app", args=["-w", "1", "--graceful-timeout", "3"], env=JSON)
    trace_id, headers = traceparent()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        request = pool.submit(server.get, "/slow?20", 30.0, headers)
        server.wait_value("http_server_active_requests", 1, http_request_method="GET")
        stopped = time.time()
        server.signal(signal.SIGTERM)
        [line] = wait_until(
            lambda: lines(server, "graceful_timeout"), 15, what="the graceful-stop line", until=lambda found: found
        )
        concurrent.futures.wait([request], 30)  # cut off with the worker
    assert (trace_id, "/slow", 3.0, "error") == (line["trace_id"], line["path"], line["limit"], line["level"])
    assert names(line, "slow_in_here")
    # logged when less than a report interval (0.5 s) and a margin (0.75 s) were left, at a report (every 0.5 s)
    assert stopped + 3 - 0.5 - 0.75 - 0.5 <= at(line) <= stopped + 3, f"{at(line) - stopped:.2f} s after SIGTERM"
