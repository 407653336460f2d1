"""What runs in gunicorn's dirty processes: the dirty arbiter's limit reports (otel_gunicorn._worker.dirty.arbiter) and
the dirty worker's hooks into gunicorn's worker object (otel_gunicorn._worker.dirty.worker).

Nothing here builds a MeterProvider: the dirty worker's would become this test process's global one.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import types

import pytest
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData

from otel_gunicorn import _handoff
from otel_gunicorn._config import Config
from otel_gunicorn._snapshot import snapshot_from_payload
from otel_gunicorn._wire import FrameDecoder, FrameKind
from otel_gunicorn._worker.dirty import arbiter as dirty_arbiter
from otel_gunicorn._worker.dirty import worker as dirty_worker
from tests.unit.clock import Clock


@pytest.fixture
def channel(tmp_path):
    """A listening unix socket standing for the arbiter's channel."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "channel.sock"))
    listener.listen(8)
    listener.settimeout(0.5)
    yield listener
    listener.close()


def limits_received(listener: socket.socket) -> list[int]:
    """The limits of every report waiting in the listener's backlog."""
    received: list[int] = []
    listener.settimeout(0.05)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return received
        with conn:
            [frame] = FrameDecoder(1 << 20).feed(conn.recv(65536))
        assert FrameKind.SNAPSHOT == frame.kind
        [points] = snapshot_from_payload(frame.payload).values()
        limit = points[()]
        assert isinstance(limit, int)  # a gauge of gunicorn's num_workers
        received.append(limit)


def reporter(channel, num_workers, clock=None):
    arbiter = types.SimpleNamespace(num_workers=num_workers)
    return arbiter, dirty_arbiter.LimitReporter(arbiter, channel.getsockname(), clock or Clock(0.0))


def test_the_limit_is_reported(channel):
    """The dirty arbiter's num_workers reaches the channel as gunicorn.dirty.worker.limit."""
    _, limit = reporter(channel, 2)
    limit.report()
    assert [2] == limits_received(channel)


def test_an_unchanged_limit_is_not_sent_again_until_the_refresh(channel):
    """Every manage_workers run asks; only a change, or a minute's silence, sends."""
    clock = Clock(0.0)
    arbiter, limit = reporter(channel, 2, clock)
    limit.report()
    limit.report()
    arbiter.num_workers = 3  # TTIN, or gunicornc dirty add
    limit.report()
    clock.now += dirty_arbiter.REFRESH
    limit.report()
    assert [2, 3, 3] == limits_received(channel)


def test_a_report_that_fails_is_retried(tmp_path):
    """Before the channel exists (the dirty arbiter starts before when_ready) nothing is raised; the next run sends."""
    path = str(tmp_path / "late.sock")
    limit = dirty_arbiter.LimitReporter(types.SimpleNamespace(num_workers=2), path, Clock(0.0))
    limit.report()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as late:
        late.bind(path)
        late.listen(8)
        limit.report()
        assert [2] == limits_received(late)


def test_no_limit_without_a_number(channel):
    """A dirty arbiter without an integer num_workers reports nothing."""
    _, limit = reporter(channel, None)
    limit.report()
    assert [] == limits_received(channel)


@pytest.fixture
def dirty_link(monkeypatch, channel):
    monkeypatch.setattr(_handoff.HANDOFF, "dirty_link", _handoff.ArbiterLink(Config(), channel.getsockname(), {}))


def fake_dirty_arbiter(runs: list[str]):
    async def manage_workers():
        runs.append("managed")

    return types.SimpleNamespace(num_workers=2, manage_workers=manage_workers)


@pytest.mark.usefixtures("dirty_link")
def test_manage_workers_reports_after_each_run(channel):
    """on_dirty_starting wraps manage_workers: gunicorn's own run first, then the report."""
    runs: list[str] = []
    arbiter = fake_dirty_arbiter(runs)
    dirty_arbiter.start(arbiter)
    asyncio.run(arbiter.manage_workers())
    assert (["managed"], [2]) == (runs, limits_received(channel))


def test_without_a_dirty_link_the_dirty_arbiter_is_left_alone(monkeypatch):
    """No channel reserved (no otel_gunicorn on_starting, metrics off): gunicorn's method stays as it was."""
    monkeypatch.setattr(_handoff.HANDOFF, "dirty_link", None)
    arbiter = fake_dirty_arbiter([])
    original = arbiter.manage_workers
    dirty_arbiter.start(arbiter)
    assert original is arbiter.manage_workers


# ---------------------------------------------------------------- the dirty worker


class FakeRuntime:
    """Stands for DirtyWorkerRuntime: records the goodbye reasons it was asked for."""

    def __init__(self) -> None:
        self.aborted = False
        self.reasons: list[str] = []

    def shutdown(self, reason: str) -> None:
        self.reasons.append(reason)


def test_the_final_report_follows_a_graceful_run():
    """run() returning (TERM, QUIT, INT) sends the final report with a normal goodbye."""
    runtime = FakeRuntime()
    dirty_worker._reporting_after(lambda: None, runtime)()
    assert ["normal"] == runtime.reasons


def test_a_run_that_raises_reports_an_error_and_reraises():
    """run() raising: the final report goes out with an error goodbye, and the exception goes on to gunicorn."""
    runtime = FakeRuntime()

    def run() -> None:
        raise SystemExit(1)

    with pytest.raises(SystemExit):
        dirty_worker._reporting_after(run, runtime)()
    assert ["error"] == runtime.reasons


def test_an_abort_is_noted_and_passed_on():
    """SIGABRT marks the runtime aborted, then runs gunicorn's own handler."""
    runtime, seen = FakeRuntime(), []
    handler = dirty_worker._noting_abort(lambda signum, frame: seen.append(signum), runtime)
    handler(signal.SIGABRT, None)
    assert (True, [signal.SIGABRT]) == (runtime.aborted, seen)


def test_gunicorns_worker_methods_are_wrapped():
    """execute is measured and run is followed by the final report, on gunicorn's worker object."""
    runtime = FakeRuntime()
    runtime.calls = types.SimpleNamespace(wrap=lambda execute: ("measured", execute))

    async def execute(app_path, action, args, kwargs):
        return None

    worker = types.SimpleNamespace(execute=execute, run=lambda: None)
    dirty_worker._instrument(worker, runtime)
    worker.run()
    assert (("measured", execute), ["normal"]) == (worker.execute, runtime.reasons)


def test_an_orphaned_dirty_worker_stops_reporting(monkeypatch, tmp_path):
    """Once its dirty arbiter is gone (another parent), the exporter sends nothing: the arbiter would refuse it."""
    exporter = dirty_worker.DirtyChannelExporter(str(tmp_path / "no-channel.sock"), send_timeout=0.1)
    monkeypatch.setattr(dirty_worker.os, "getppid", lambda: 1)
    result = exporter.export(MetricsData(resource_metrics=[]))
    assert (MetricExportResult.FAILURE, 0, True) == (result, exporter.dropped, exporter.orphaned)
