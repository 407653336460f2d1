"""Fixtures shared across the suites.

For tests/e2e and tests/chaos: real gunicorn, Prometheus and Rotel processes from ``harness``. Each such fixture is a
factory; every process it started is stopped after the test, and its log printed when the test failed
(``pytest_runtest_makereport`` below records the outcome for that). For tests/unit: ``logged``, what otel_gunicorn
logged during the test.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import gunicorn
from harness.gunicorn import Gunicorn
from harness.process import Fleet, LoggedProcess
from harness.prometheus import Prometheus
from tests.e2e.apps import DIRECTORY as APPS
from tests.unit.records import Records


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's own outcome on the item, for the fixtures' teardown (``request.node.rep_call``)."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def _run_fleet(request: pytest.FixtureRequest, factory: Callable[..., LoggedProcess]) -> Iterator[Fleet[Any]]:
    fleet: Fleet[Any] = Fleet(factory)
    with fleet:
        yield fleet
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(fleet.logs())


@pytest.fixture
def start_gunicorn(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet[Gunicorn]]:
    """``start_gunicorn(app, args=[...], env={...}, ...)``: a ready :class:`harness.gunicorn.Gunicorn` serving the
    test applications, with otel_gunicorn's config unless ``config`` says otherwise."""
    yield from _run_fleet(request, functools.partial(Gunicorn, tmp_path, apps=APPS))


@pytest.fixture
def run_gunicorn(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_gunicorn(app, env={...}, config=...)``: a gunicorn expected to exit by itself, its output captured."""

    def run(app: str = "counting:app", **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return gunicorn.run(tmp_path, app, apps=APPS, **kwargs)

    return run


@pytest.fixture
def start_prometheus(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet[Prometheus]]:
    """``start_prometheus(["127.0.0.1:PORT", ...])``: a ready Prometheus server scraping those targets every second."""
    yield from _run_fleet(request, functools.partial(Prometheus, tmp_path))


@pytest.fixture
def start_rotel(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet[Any]]:
    """``start_rotel()``: a ready Rotel collector (``start_rotel(grpc_port=..., http_port=...)`` to reuse ports)."""
    from harness.collector import Rotel  # the rotel wheel is only needed where a collector is

    yield from _run_fleet(request, functools.partial(Rotel, tmp_path))


@pytest.fixture
def logged() -> Iterator[Records]:
    """What otel_gunicorn logs during the test, read from its own logger whatever propagation says."""
    handler = Records()
    logger = logging.getLogger("otel_gunicorn")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)
