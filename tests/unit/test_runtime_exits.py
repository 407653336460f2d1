"""The runtime's wiring: gunicorn's worker table and the channel's events reach the lifecycle and the merge store."""

from __future__ import annotations

import types

import pytest

from otel_gunicorn._arbiter.lifecycle import DEAD_CONNECTION_GRACE, WorkerLifecycle
from otel_gunicorn._arbiter.runtime import ArbiterRuntime
from otel_gunicorn._config import Config
from otel_gunicorn._handoff import SLOT_ATTR
from otel_gunicorn._snapshot import Kind, MetricMeta
from tests.unit.clock import Clock

COUNTER = MetricMeta("app", "", "", "requests", "", "{request}", Kind.COUNTER)
GAUGE = MetricMeta("app", "", "", "threads", "", "{thread}", Kind.GAUGE)
NO_EXITS = {"timeout": 0, "killed": 0, "error": 0, "normal": 0}


@pytest.fixture
def server():
    return types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1)


@pytest.fixture
def clock():
    return Clock(0.0)


@pytest.fixture
def runtime(tmp_path, server, clock):
    rt = ArbiterRuntime(Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path)), server)
    rt.lifecycle = WorkerLifecycle(clock=clock)
    yield rt
    rt.channel.stop()


def fork(runtime, server, pid: int):
    """What gunicorn does around a fork: pre_fork on a new Worker object, then list it under its pid."""
    worker = types.SimpleNamespace(pid=None, aborted=False)
    runtime.assign_slot(worker)
    worker.pid = pid
    server.WORKERS[pid] = worker
    return worker


def reap(runtime, server, worker) -> None:
    """What gunicorn does when a worker exits: unlist it, then call child_exit."""
    del server.WORKERS[worker.pid]
    runtime.worker_exited(worker)


def test_slots_are_the_smallest_free_and_reused(runtime, server):
    """Three forks take slots 0, 1, 2; after slot 1's worker is reaped the next fork takes 1 again."""
    workers = [fork(runtime, server, pid) for pid in (1, 2, 3)]
    reap(runtime, server, workers[1])
    replacement = fork(runtime, server, 4)
    assert [0, 1, 2, 1] == [getattr(w, SLOT_ATTR) for w in [*workers, replacement]]


def test_graceful_exit_reported_before_reaping_is_normal(runtime, server):
    """Report, goodbye, EOF, then child_exit: one normal exit and the worker's total is kept."""
    w = fork(runtime, server, 10)
    runtime.connected(10)
    runtime.report(10, {COUNTER: {(): 3}})
    runtime.goodbye(10, "normal")
    runtime.disconnected(10, running=False)
    reap(runtime, server, w)
    assert (NO_EXITS | {"normal": 1}, {COUNTER: {(): 3}}) == (runtime.lifecycle.exits, runtime.store.merged())
    assert ([], frozenset()) == (runtime.store.worker_pids, runtime.lifecycle.tracked_pids)


def test_gauges_carry_the_slot_and_go_at_the_reap(runtime, server):
    """A live worker's gauge is labelled with its slot; once reaped its gauge is gone though it is still connected."""
    fork(runtime, server, 20)
    w = fork(runtime, server, 21)
    runtime.connected(21)
    runtime.report(21, {GAUGE: {(): 7}})
    before = runtime.store.merged()
    reap(runtime, server, w)
    assert ({GAUGE: {(("gunicorn.worker.slot", 1),): 7}}, {}) == (before, runtime.store.merged())


def test_late_connection_after_reaping_keeps_the_goodbye(runtime, server):
    """A short-lived worker reaped before its only connection was accepted is counted as normal, once, with its data."""
    w = fork(runtime, server, 11)
    reap(runtime, server, w)
    runtime.connected(11)
    runtime.report(11, {COUNTER: {(): 2}, GAUGE: {(): 1}})
    runtime.goodbye(11, "normal")
    runtime.disconnected(11, running=False)
    assert (NO_EXITS | {"normal": 1}, {COUNTER: {(): 2}}) == (runtime.lifecycle.exits, runtime.store.merged())
    assert frozenset() == runtime.lifecycle.tracked_pids


def test_a_worker_that_never_connected_is_settled_after_the_grace(runtime, server, clock):
    """No connection at all: counted as killed once the grace period has passed, and nothing is kept."""
    w = fork(runtime, server, 12)
    reap(runtime, server, w)
    runtime.leaked()
    before = runtime.lifecycle.exits
    clock.now += DEAD_CONNECTION_GRACE + 1
    runtime.leaked()
    assert (NO_EXITS, NO_EXITS | {"killed": 1}) == (before, runtime.lifecycle.exits)
    assert frozenset() == runtime.lifecycle.tracked_pids


def test_leaked_names_dead_workers_still_connected_after_the_grace(runtime, server, clock):
    """The channel is told to close a reaped worker's connection once it outlived the grace period."""
    w = fork(runtime, server, 13)
    runtime.connected(13)
    reap(runtime, server, w)
    before = runtime.leaked()
    clock.now += DEAD_CONNECTION_GRACE + 1
    assert (set(), {13}) == (before, runtime.leaked())


def test_goodbye_from_an_unknown_pid_is_not_kept(runtime):
    """A goodbye from a pid that is neither a worker nor reaped leaves nothing behind."""
    runtime.goodbye(99, "normal")
    assert frozenset() == runtime.lifecycle.tracked_pids
