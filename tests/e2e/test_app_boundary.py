"""Request metrics for worker classes gunicorn calls no request hooks for (measured around the application), and
no double counting for the classes measured through the hooks. Real gunicorn, on loopback."""

from __future__ import annotations

import concurrent.futures
import importlib.util
from collections.abc import Callable
from typing import Any

import pytest

from harness.scrape import reports_at, wait_reports, wait_value
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

COUNT = "http_server_request_duration_seconds_count"
WORKERS = 2
#: seconds between two reports of a worker: short, since the tests wait for reports to arrive
INTERVAL = "0.2"

# worker -> (module it needs, application, worker arguments)
WRAPPED = {
    "uvicorn-worker": ("uvicorn_worker", "slow_asgi:app", ["-k", "uvicorn_worker.UvicornWorker"]),
    "tornado": ("tornado", "slow:app", ["-k", "tornado"]),
    "gevent_pywsgi": ("gevent", "slow:app", ["-k", "gevent_pywsgi"]),
}
HOOKED = {
    "sync": (None, "slow:app", ["-k", "sync"]),
    "gthread": (None, "slow:app", ["-k", "gthread", "--threads", "4"]),
}


def start(start_gunicorn: Callable[..., Any], worker: str) -> Any:
    module, app, args = {**WRAPPED, **HOOKED}[worker]
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    return start_gunicorn(app, args=["-w", str(WORKERS), *args], env={"OTEL_GUNICORN_METRICS_INTERVAL": INTERVAL})


def settled_count(server: Any) -> float:
    """The request count once every worker has reported what it served so far: the readiness probe's request(s)."""
    wait_reports(reports_at(server.metrics_port), WORKERS)
    count = server.value(COUNT)
    assert count is not None, "the readiness probe's request is counted"
    return count


@pytest.mark.parametrize("worker", [*WRAPPED, *HOOKED])
def test_200_requests_are_counted_exactly_once(start_gunicorn, worker):
    """200 requests raise the request count by exactly 200 — no request lost, none counted twice."""
    server = start(start_gunicorn, worker)
    before = settled_count(server)
    assert [200] * 200 == server.load(200)
    server.wait_value(COUNT, before + 200)
    # a late second count of any request would be in these reports
    wait_reports(reports_at(server.metrics_port), WORKERS)
    assert (before + 200, before + 200) == (server.value(COUNT), server.value(COUNT, http_response_status_code="200"))


@pytest.mark.parametrize("worker", list(WRAPPED))
def test_a_held_request_makes_its_worker_busy(start_gunicorn, worker):
    """While a request sleeps in the application, one of the two workers is busy with one request in flight."""
    server = start(start_gunicorn, worker)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(server.get, "/slow?4", 30.0)
        scrape = wait_until(
            server.scrape,
            15,
            until=lambda s: s.value("gunicorn_workers", gunicorn_worker_state="busy") == 1,
            what="a busy worker",
        )
        assert (1, 1) == (
            scrape.value("gunicorn_workers", gunicorn_worker_state="idle"),
            scrape.value("http_server_active_requests"),
        )
        assert 200 == held.result(30)[0]
    assert 0 == server.wait_value("gunicorn_workers", 0, gunicorn_worker_state="busy")


def test_uvicorn_worker_reports_its_open_connections(start_gunicorn):
    """uvicorn-worker: a connection held open by a slow request is counted in gunicorn.worker.active_connections."""
    server = start(start_gunicorn, "uvicorn-worker")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(server.get, "/slow?4", 30.0)
        connections = wait_value(
            server.metrics_port, "gunicorn_worker_active_connections", lambda v: v is not None and v >= 1, 15
        )
        assert connections is not None and connections >= 1
        assert 200 == held.result(30)[0]
    assert 0 == server.wait_value("gunicorn_worker_active_connections", 0)
