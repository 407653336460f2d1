"""Exit reasons when the channel and the main thread see a worker's end in either order."""

from __future__ import annotations

import types

import pytest

from otel_gunicorn._arbiter.channel import DEAD_CONNECTION_GRACE
from otel_gunicorn._arbiter.runtime import ArbiterRuntime
from otel_gunicorn._config import Config


@pytest.fixture
def runtime(tmp_path):
    server = types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1)
    rt = ArbiterRuntime(Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path)), server)
    yield rt
    rt.channel.stop()


def worker(rt, pid: int):
    w = types.SimpleNamespace(pid=pid, aborted=False)
    rt._server.WORKERS[pid] = w
    return w


def test_graceful_exit_reported_before_reaping_is_normal(runtime):
    """Report, goodbye, EOF, then child_exit: one normal exit."""
    w = worker(runtime, 10)
    runtime.connected(10)
    runtime.goodbye(10, "normal")
    runtime.disconnected(10, running=False)
    del runtime._server.WORKERS[10]
    runtime.worker_exited(w)
    assert 1 == runtime.exits.counts["normal"]


def test_late_connection_after_reaping_keeps_the_goodbye(runtime):
    """A short-lived worker reaped before its only connection was accepted is still counted as normal, once."""
    w = worker(runtime, 11)
    del runtime._server.WORKERS[11]
    runtime.worker_exited(w)
    runtime.connected(11)
    runtime.goodbye(11, "normal")
    runtime.disconnected(11, running=False)
    assert {"timeout": 0, "killed": 0, "error": 0, "normal": 1} == runtime.exits.counts
    assert [] == runtime.exits.reaped_before(float("inf"))


def test_a_worker_that_never_connected_is_settled_after_the_grace(runtime):
    """No connection at all: counted as killed once the grace period has passed, and nothing is kept."""
    w = worker(runtime, 12)
    del runtime._server.WORKERS[12]
    runtime.worker_exited(w)
    assert 0 == runtime.exits.counts["killed"]
    runtime.exits._pending[12].reaped_at -= DEAD_CONNECTION_GRACE + 1
    runtime.leaked(DEAD_CONNECTION_GRACE)
    assert 1 == runtime.exits.counts["killed"]
    assert [] == runtime.exits.reaped_before(float("inf"))


def test_goodbye_from_an_unknown_pid_is_not_kept(runtime):
    """A goodbye from a pid that is neither a worker nor reaped leaves nothing behind."""
    runtime.goodbye(99, "normal")
    assert [] == runtime.exits.reaped_before(float("inf"))
    assert {} == runtime.exits._pending
