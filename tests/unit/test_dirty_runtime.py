"""The arbiter runtime with a dirty pool: channel events of dirty workers and of the dirty arbiter reach the dirty pool
and the merge store, and ``on_starting`` reserves the channel for the dirty side.

A dirty worker must be a live process whose parent is the dirty arbiter (the sweep reads /proc), so this test process
plays the dirty worker and its parent the dirty arbiter, until the test names another dirty arbiter.
"""

from __future__ import annotations

import os
import stat
import types

import pytest

from otel_gunicorn import _handoff
from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter import runtime as arbiter_runtime
from otel_gunicorn._arbiter.dirty import DirtyPool
from otel_gunicorn._arbiter.lifecycle import WorkerLifecycle
from otel_gunicorn._arbiter.runtime import ArbiterRuntime
from otel_gunicorn._config import Config
from otel_gunicorn._snapshot import Kind, MetricMeta
from tests.unit.clock import Clock

COUNTER = MetricMeta("app", "", "", "inferences", "", "{call}", Kind.COUNTER)
GAUGE = MetricMeta("app", "", "", "model.bytes", "", "By", Kind.GAUGE)
LIMIT = inst.DIRTY_WORKER_LIMIT.meta
NO_EXITS = {"timeout": 0, "killed": 0, "error": 0, "normal": 0}
ME = os.getpid()


@pytest.fixture
def server():
    return types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1, dirty_arbiter_pid=os.getppid())


@pytest.fixture
def runtime(tmp_path, server):
    rt = ArbiterRuntime(Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path)), server)
    clock = Clock(0.0)
    rt.lifecycle = WorkerLifecycle(clock=clock)
    rt.dirty = DirtyPool(clock=clock)
    yield rt
    rt.channel.stop()


def dirty_exits(runtime) -> dict[str, int]:
    return runtime.dirty.lifecycle.exits


def test_a_dirty_workers_gauge_carries_the_dirty_slot(runtime):
    """A dirty worker's gauge is labelled gunicorn.dirty.worker.slot, its counter summed as any worker's."""
    runtime.connected(ME, dirty=True)
    runtime.report(ME, {GAUGE: {(): 7}, COUNTER: {(): 3}})
    merged = runtime.store.merged()
    assert ({(("gunicorn.dirty.worker.slot", 0),): 7}, {(): 3}) == (merged[GAUGE], merged[COUNTER])


def test_a_dirty_worker_is_not_an_http_worker(runtime):
    """Its record lives in the dirty pool only: the HTTP workers' lifecycle never hears of it."""
    runtime.connected(ME, dirty=True)
    assert (frozenset(), True) == (runtime.lifecycle.tracked_pids, runtime.dirty.tracks(ME))


def test_a_dead_dirty_worker_keeps_its_totals_and_counts_one_killed_exit(runtime, server):
    """Closed while not running, then no longer the dirty arbiter's child: gauge gone, total kept, one killed exit."""
    runtime.connected(ME, dirty=True)
    runtime.report(ME, {GAUGE: {(): 7}, COUNTER: {(): 3}})
    runtime.disconnected(ME, running=False)
    server.dirty_arbiter_pid = 0  # /proc no longer shows it as a child of the (current) dirty arbiter
    runtime.leaked()
    assert ({COUNTER: {(): 3}}, []) == (runtime.store.merged(), runtime.store.worker_pids)
    assert (NO_EXITS | {"killed": 1}, NO_EXITS) == (dirty_exits(runtime), runtime.lifecycle.exits)


def test_a_dirty_worker_still_running_is_not_settled_by_the_sweep(runtime):
    """The sweep leaves a dirty worker alone while /proc shows it running under the dirty arbiter."""
    runtime.connected(ME, dirty=True)
    runtime.report(ME, {COUNTER: {(): 3}})
    runtime.leaked()
    assert ([ME], NO_EXITS) == (runtime.store.worker_pids, dirty_exits(runtime))


def test_a_dirty_workers_timeout_goodbye_counts_a_timeout(runtime, server):
    """A dirty worker that says it was aborted exits on timeout."""
    runtime.connected(ME, dirty=True)
    runtime.goodbye(ME, "timeout")
    runtime.disconnected(ME, running=False)
    server.dirty_arbiter_pid = 0
    runtime.leaked()
    assert NO_EXITS | {"timeout": 1} == dirty_exits(runtime)


def test_the_dirty_arbiter_reports_the_limit_and_is_not_a_worker(runtime, server):
    """The dirty arbiter's report is the pool's limit, shown while it is gunicorn's dirty arbiter, and nothing else."""
    server.dirty_arbiter_pid = 77
    runtime.connected(77)
    runtime.report(77, {LIMIT: {(): 2}})
    runtime.disconnected(77, running=True)
    shown = runtime.merged_snapshot().get(LIMIT)
    server.dirty_arbiter_pid = 0  # gunicorn reaped it
    assert ({(): 2}, frozenset(), []) == (shown, runtime.lifecycle.tracked_pids, runtime.store.worker_pids)
    assert LIMIT not in runtime.merged_snapshot()


def test_the_merged_view_has_the_pool_metrics(runtime):
    """A dirty worker with a call in flight shows as busy, with exits from 0, in the merged view."""
    runtime.connected(ME, dirty=True)
    runtime.report(ME, {inst.DIRTY_CALLS_ACTIVE.meta: {(("gunicorn.dirty.app", "m:A"),): 1}})
    merged = runtime.merged_snapshot()
    state = "gunicorn.dirty.worker.state"
    expected = {((state, "busy"),): 1, ((state, "idle"),): 0}
    assert expected == merged[inst.DIRTY_WORKER_COUNT.meta]
    assert inst.DIRTY_WORKER_EXITS.meta in merged


def test_without_a_dirty_pool_no_dirty_metric(tmp_path):
    """A server without dirty_apps (gunicorn sets no dirty arbiter pid, or has no such attribute) shows none."""
    server = types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1)
    rt = ArbiterRuntime(Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path)), server)
    try:
        names = [meta.name for meta in rt.merged_snapshot()]
    finally:
        rt.channel.stop()
    assert [] == [name for name in names if name.startswith("gunicorn.dirty.")]


# ---------------------------------------------------------------- on_starting: the channel reserved for the dirty side


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """The arbiter module as before on_starting, configured to put its channel under tmp_path."""
    monkeypatch.setattr(arbiter_runtime.STATE, "config", Config(channel_dir=str(tmp_path)))
    monkeypatch.setattr(arbiter_runtime.STATE, "reserved_dir", None)
    monkeypatch.setattr(_handoff.HANDOFF, "dirty_link", None)


def gunicorn_server(**settings):
    return types.SimpleNamespace(cfg=types.SimpleNamespace(**settings))


@pytest.mark.usefixtures("fresh")
def test_dirty_apps_reserve_a_private_channel_directory(tmp_path):
    """With dirty_apps, on_starting creates the channel's 0700 directory and records the socket path for the dirty
    side."""
    arbiter_runtime.prepare_dirty(gunicorn_server(dirty_workers=2, dirty_apps=["models:Model"]))
    link = _handoff.dirty_link()
    assert link is not None and link.channel_path is not None
    directory = os.path.dirname(link.channel_path)
    assert (str(tmp_path), 0o700) == (os.path.dirname(directory), stat.S_IMODE(os.stat(directory).st_mode))


@pytest.mark.usefixtures("fresh")
@pytest.mark.parametrize(
    "settings",
    [{"dirty_workers": 0, "dirty_apps": ["models:Model"]}, {"dirty_workers": 2, "dirty_apps": []}, {}],
    ids=["no-dirty-workers", "no-dirty-apps", "gunicorn-before-25"],
)
def test_without_a_dirty_pool_nothing_is_reserved(tmp_path, settings):
    """No dirty arbiter will be forked: no directory, no link."""
    arbiter_runtime.prepare_dirty(gunicorn_server(**settings))
    assert (None, []) == (_handoff.dirty_link(), list(tmp_path.iterdir()))


@pytest.mark.usefixtures("fresh")
def test_metrics_off_reserve_nothing(monkeypatch, tmp_path):
    """OTEL_METRICS_EXPORTER=none: no channel, so nothing for the dirty side either."""
    monkeypatch.setattr(arbiter_runtime.STATE, "config", Config(metrics_exporters=frozenset({"none"})))
    arbiter_runtime.prepare_dirty(gunicorn_server(dirty_workers=2, dirty_apps=["models:Model"]))
    assert None is _handoff.dirty_link()


@pytest.mark.usefixtures("fresh")
def test_the_channel_binds_where_the_dirty_side_looks(tmp_path):
    """The runtime started in when_ready binds its socket at the path reserved in on_starting, and removes it."""
    server = gunicorn_server(dirty_workers=2, dirty_apps=["models:Model"])
    arbiter_runtime.prepare_dirty(server)
    config = Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path))
    rt = ArbiterRuntime(config, server, arbiter_runtime.STATE.reserved_dir)
    bound = os.path.exists(_handoff.dirty_link().channel_path)
    rt.channel.stop()
    assert (True, []) == (bound, list(tmp_path.iterdir()))
