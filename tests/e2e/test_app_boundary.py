"""Request metrics for worker classes gunicorn calls no request hooks for (measured around the application), and
no double counting for the classes measured through the hooks. Real gunicorn, on loopback."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.e2e

T = TypeVar("T")

COUNT = "http_server_request_duration_seconds_count"

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
    return start_gunicorn(app, args=["-w", "2", *args])


def poll(read: Callable[[], T | None], accept: Callable[[T], bool], what: str, timeout: float = 15.0) -> T:
    """Read until ``accept`` takes the value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = read()
        except OSError:  # the endpoint between two answers
            value = None
        if value is not None and accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        time.sleep(0.1)


def settled_count(server: Any) -> float:
    """The request count once it stops moving: the readiness probe's request(s), before the test's own."""
    readings: list[float | None] = []

    def stable() -> float | None:
        readings.append(server.value(COUNT))
        time.sleep(0.5)
        readings.append(server.value(COUNT))
        return readings[-1] if readings[-1] is not None and readings[-1] == readings[-2] else None

    return poll(stable, lambda _v: True, "the readiness probe to be counted")


@pytest.mark.parametrize("worker", [*WRAPPED, *HOOKED])
def test_200_requests_are_counted_exactly_once(start_gunicorn, worker):
    """200 requests raise the request count by exactly 200 — no request lost, none counted twice."""
    server = start(start_gunicorn, worker)
    before = settled_count(server)
    assert [200] * 200 == server.load(200)
    server.wait_value(COUNT, before + 200)
    time.sleep(1.5)  # a few more reports: a late second count of any request would show now
    assert (before + 200, before + 200) == (server.value(COUNT), server.value(COUNT, http_response_status_code="200"))


@pytest.mark.parametrize("worker", list(WRAPPED))
def test_a_held_request_makes_its_worker_busy(start_gunicorn, worker):
    """While a request sleeps in the application, one of the two workers is busy with one request in flight."""
    server = start(start_gunicorn, worker)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(server.get, "/slow?4", 30.0)
        scrape = poll(
            server.scrape,
            lambda s: s.value("gunicorn_workers", gunicorn_worker_state="busy") == 1,
            "a busy worker",
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
        assert 1 <= poll(lambda: server.value("gunicorn_worker_active_connections"), lambda v: v >= 1, "a connection")
        assert 200 == held.result(30)[0]
    assert 0 == server.wait_value("gunicorn_worker_active_connections", 0)
