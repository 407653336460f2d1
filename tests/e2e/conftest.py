"""Fixtures starting real gunicorn masters and a real Prometheus server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import Gunicorn, Prometheus

pytestmark = pytest.mark.e2e


@pytest.fixture
def start_gunicorn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: ``start_gunicorn(app, args=[...], env={...})``; every server is stopped after the test."""
    started: list[Gunicorn] = []

    def start(app: str = "counting:app", **kwargs: Any) -> Gunicorn:
        server = Gunicorn(tmp_path, app, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"--- gunicorn log ({server.log_path}) ---\n{server.log()}")


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        server = Prometheus(tmp_path, targets)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_rotel(tmp_path: Path) -> Iterator[Any]:
    """Factory for real Rotel collectors (``start_rotel(grpc_port=..., http_port=...)`` to reuse ports)."""
    from tests.e2e.collector import Rotel

    started: list[Rotel] = []

    def start(**ports: int) -> Rotel:
        collector = Rotel(tmp_path, **ports)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
