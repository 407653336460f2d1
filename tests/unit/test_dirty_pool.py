"""The arbiter's view of the dirty pool (otel_gunicorn._arbiter.dirty): slots, deaths, exit reasons, pool metrics."""

from __future__ import annotations

import pytest

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.dirty import EXIT_REASON_ATTRIBUTE, STATE_ATTRIBUTE, DirtyPool
from otel_gunicorn._arbiter.lifecycle import DEAD_CONNECTION_GRACE, Actions
from otel_gunicorn._snapshot import Kind, MetricMeta
from tests.unit.clock import Clock

NO_EXITS = {"timeout": 0, "killed": 0, "error": 0, "normal": 0}
DIRTY_ARBITER = 50


@pytest.fixture
def clock():
    return Clock(0.0)


@pytest.fixture
def pool(clock):
    return DirtyPool(clock=clock)


def alive_only(*pids: int):
    """The sweep's view of /proc: exactly ``pids`` still run as children of the dirty arbiter."""
    return lambda pid: pid in pids


def test_first_connections_take_the_smallest_free_slots(pool):
    """Two dirty workers connect: slots 0 and 1, labelling their reports."""
    pool.connected(101, running=True)
    pool.connected(102, running=True)
    assert ({101: 0, 102: 1}, 1) == (pool.slots, pool.report(102).slot)


def test_a_second_connection_keeps_the_slot(pool):
    """A dirty worker that reconnects (after a send timed out) keeps its slot."""
    pool.connected(101, running=True)
    pool.disconnected(101, running=True)
    pool.connected(101, running=True)
    assert {101: 0} == pool.slots


def test_a_killed_dirty_worker_frees_its_slot_at_once(pool):
    """kill -9 closes the connection of a process no longer running: gauges go, the slot is free for the next."""
    pool.connected(101, running=True)
    pool.connected(102, running=True)
    actions = pool.disconnected(101, running=False)
    pool.connected(103, running=True)
    assert (frozenset({101}), {102: 1, 103: 0}) == (actions.drop_gauges, pool.slots)


def test_a_killed_dirty_worker_is_settled_by_the_sweep(pool):
    """Once /proc shows it gone, the killed worker's totals retire and one killed exit is counted."""
    pool.connected(101, running=True)
    pool.disconnected(101, running=False)
    actions = pool.sweep(alive_only())
    assert (frozenset({101}), NO_EXITS | {"killed": 1}) == (actions.retire, pool.lifecycle.exits)
    assert not pool.tracks(101)


def test_a_graceful_exit_is_normal(pool):
    """Goodbye, close while still running, then gone from /proc: one normal exit."""
    pool.connected(101, running=True)
    pool.goodbye(101, "normal")
    pool.disconnected(101, running=True)
    assert frozenset() == pool.sweep(alive_only(101)).retire
    assert frozenset({101}) == pool.sweep(alive_only()).retire
    assert NO_EXITS | {"normal": 1} == pool.lifecycle.exits


def test_an_aborted_dirty_worker_exits_on_timeout(pool):
    """A dirty worker that says it got the dirty arbiter's abort counts as a timeout, not as its goodbye."""
    pool.connected(101, running=True)
    pool.goodbye(101, "timeout")
    pool.disconnected(101, running=True)
    pool.sweep(alive_only())
    assert NO_EXITS | {"timeout": 1} == pool.lifecycle.exits


def test_the_sweep_waits_for_a_dead_workers_open_connection(pool, clock):
    """Gone from /proc with its connection still open: totals stay until the connection closes (or grace passes)."""
    pool.connected(101, running=True)
    actions = pool.sweep(alive_only())
    assert (frozenset({101}), frozenset()) == (actions.drop_gauges, actions.retire)
    clock.now += DEAD_CONNECTION_GRACE + 1
    assert frozenset({101}) == pool.sweep(alive_only()).close
    assert frozenset({101}) == pool.disconnected(101, running=False).retire


def test_a_late_connection_of_a_dead_process_gets_no_slot(pool):
    """A connection accepted after its process died is heard (totals) but labels nothing."""
    pool.connected(101, running=False)
    assert ({}, None) == (pool.slots, pool.report(101).slot)


def test_a_reused_pid_is_a_new_dirty_worker(pool):
    """A live process on a pid whose dead worker is not settled yet: the old one settles, the new one gets a slot."""
    pool.connected(101, running=True)
    pool.sweep(alive_only())  # dead, its connection still open
    actions = pool.connected(101, running=True)
    assert (frozenset({101}), {101: 0}) == (actions.retire, pool.slots)
    assert NO_EXITS | {"killed": 1} == pool.lifecycle.exits


def test_an_unknown_goodbye_reason_is_ignored(pool):
    """Only normal, error and timeout mean anything; no goodbye at all means killed."""
    pool.connected(101, running=True)
    pool.goodbye(101, "fine")
    pool.sweep(alive_only())
    pool.disconnected(101, running=False)
    assert NO_EXITS | {"killed": 1} == pool.lifecycle.exits


def test_released_actions_are_passed_on_unchanged(pool):
    """What the lifecycle decides reaches the runtime as it is."""
    pool.connected(101, running=True)
    assert Actions(drop_gauges=frozenset({101})) == pool.disconnected(101, running=False)


# ---------------------------------------------------------------- pool metrics

LIMIT = inst.DIRTY_WORKER_LIMIT.meta


def workers(snapshot) -> dict[str, int]:
    return {dict(k)[STATE_ATTRIBUTE]: v for k, v in snapshot[inst.DIRTY_WORKER_COUNT.meta].items()}


def test_no_pool_no_metrics(pool):
    """Without a dirty arbiter and without dirty workers, nothing at all (a server without dirty_apps)."""
    assert {} == pool.metrics(None, {})


def test_busy_and_idle_come_from_calls_in_flight(pool):
    """A live dirty worker with a call in flight is busy; the others idle."""
    for pid in (101, 102, 103):
        pool.connected(pid, running=True)
    assert {"busy": 1, "idle": 2} == workers(pool.metrics(DIRTY_ARBITER, {101: 0, 102: 1}))


def test_a_dead_dirty_worker_is_neither_busy_nor_idle(pool):
    """Its last report said busy; once it is known dead it counts nowhere."""
    pool.connected(101, running=True)
    pool.connected(102, running=True)
    pool.disconnected(102, running=False)
    assert {"busy": 0, "idle": 1} == workers(pool.metrics(DIRTY_ARBITER, {102: 1}))


def test_the_limit_is_the_current_dirty_arbiters(pool):
    """The limit shows while its reporter is gunicorn's current dirty arbiter, and goes with it."""
    pool.arbiter_reported(DIRTY_ARBITER, {LIMIT: {(): 3}})
    assert {(): 3} == pool.metrics(DIRTY_ARBITER, {})[LIMIT]
    assert LIMIT not in pool.metrics(DIRTY_ARBITER + 1, {})


def test_only_the_limit_is_taken_from_the_dirty_arbiter(pool):
    """Anything else in the dirty arbiter's report is not shown."""
    other = MetricMeta("x", "", "", "other", "", "1", Kind.GAUGE)
    pool.arbiter_reported(DIRTY_ARBITER, {other: {(): 1}, LIMIT: {(): 2}})
    assert [LIMIT, inst.DIRTY_WORKER_EXITS.meta] == list(pool.metrics(DIRTY_ARBITER, {}))


def test_exits_are_counted_by_reason_from_zero(pool):
    """With a dirty pool, every reason is present from 0."""
    exits = pool.metrics(DIRTY_ARBITER, {})[inst.DIRTY_WORKER_EXITS.meta]
    assert NO_EXITS == {dict(k)[EXIT_REASON_ATTRIBUTE]: v for k, v in exits.items()}
