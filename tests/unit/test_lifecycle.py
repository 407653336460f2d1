"""Examples of the arbiter's worker lifecycle (otel_gunicorn._arbiter.lifecycle): slots, exits, retiring, the grace."""

from __future__ import annotations

import pytest

from otel_gunicorn._arbiter.lifecycle import DEAD_CONNECTION_GRACE, NOTHING, Actions, ReportVerdict, WorkerLifecycle
from tests.unit.clock import Clock


def lifecycle() -> tuple[WorkerLifecycle, Clock]:
    clock = Clock(100.0)
    return WorkerLifecycle(clock=clock), clock


def retire(*pids: int) -> Actions:
    return Actions(retire=frozenset(pids))


def drop(*pids: int) -> Actions:
    return Actions(drop_gauges=frozenset(pids))


NO_EXITS = {"timeout": 0, "killed": 0, "error": 0, "normal": 0}

# ---------------------------------------------------------------- slots


def test_first_slot_is_zero():
    """With no live worker the first slot is 0."""
    assert 0 == WorkerLifecycle.assign_slot([])


def test_smallest_free_slot_is_reused():
    """A slot freed by a dead worker is given to the next fork before any higher one."""
    assert 1 == WorkerLifecycle.assign_slot([0, 2, 3])


def test_workers_without_a_slot_do_not_take_one():
    """A live worker with no slot (forked before otel_gunicorn started) holds none."""
    assert 0 == WorkerLifecycle.assign_slot([None])


# ---------------------------------------------------------------- exit reasons


@pytest.mark.parametrize(
    ("goodbye", "aborted", "reason"),
    [
        pytest.param("normal", True, "timeout", id="aborted-is-timeout-whatever-it-said"),
        pytest.param("error", False, "error", id="goodbye-gives-the-reason"),
        pytest.param(None, False, "killed", id="no-goodbye-means-killed"),
        pytest.param("timeout", False, "killed", id="unknown-goodbye-reason-ignored"),
    ],
)
def test_exit_reason(goodbye, aborted, reason):
    """Aborted ⇒ timeout; else the goodbye (only normal or error are taken from a worker); else killed."""
    life, _ = lifecycle()
    life.connected(1, 0)
    if goodbye is not None:
        life.goodbye(1, goodbye)
    life.disconnected(1, running=False)
    life.reaped(1, aborted=aborted)
    assert NO_EXITS | {reason: 1} == life.exits


def test_unreaped_worker_is_not_counted():
    """A goodbye and a closed connection count nothing before the arbiter reaps the worker."""
    life, _ = lifecycle()
    life.connected(1, 0)
    life.goodbye(1, "normal")
    life.disconnected(1, running=False)
    assert (NO_EXITS, frozenset({1})) == (life.exits, life.tracked_pids)


def test_goodbye_from_an_unknown_pid_is_not_kept():
    """A goodbye from a pid that never connected and was not reaped leaves nothing behind."""
    life, _ = lifecycle()
    life.goodbye(99, "normal")
    assert frozenset() == life.tracked_pids


# ---------------------------------------------------------------- gauges and retiring, in either order


def test_reap_after_disconnect_retires_at_once():
    """Goodbye, EOF with the process gone, then child_exit: gauges go at EOF, totals retire at the reap."""
    life, _ = lifecycle()
    life.connected(10, 0)
    life.goodbye(10, "normal")
    at_eof = life.disconnected(10, running=False)
    at_reap = life.reaped(10, aborted=False)
    assert (drop(10), retire(10), NO_EXITS | {"normal": 1}) == (at_eof, at_reap, life.exits)


def test_reap_while_connected_drops_gauges_and_waits_for_the_disconnect():
    """Reaped with its connection open: gauges go now, totals and the exit wait for the end of stream."""
    life, _ = lifecycle()
    life.connected(10, 0)
    at_reap = life.reaped(10, aborted=False)
    life.goodbye(10, "normal")
    at_eof = life.disconnected(10, running=False)
    assert (drop(10), retire(10), NO_EXITS | {"normal": 1}) == (at_reap, at_eof, life.exits)


def test_report_of_a_reaped_worker_keeps_only_totals():
    """The last report still in the socket when the worker is reaped is accepted, as a dead worker's."""
    life, _ = lifecycle()
    life.connected(10, 3)
    life.reaped(10, aborted=False)
    assert ReportVerdict(accepted=True, slot=3, live=False) == life.report(10, None)


def test_report_after_settling_is_rejected():
    """A report for a pid already retired would count its totals twice: it is rejected."""
    life, _ = lifecycle()
    life.connected(10, 0)
    life.disconnected(10, running=False)
    life.reaped(10, aborted=False)
    assert False is life.report(10, None).accepted


def test_live_worker_that_reconnects_keeps_its_record():
    """A live worker that dropped and re-opened its connection is neither dead nor retired."""
    life, _ = lifecycle()
    life.connected(10, 0)
    actions = [life.disconnected(10, running=True), life.connected(10, 0)]
    assert ([NOTHING, NOTHING], ReportVerdict(True, 0, True)) == (actions, life.report(10, 0))


def test_every_connection_must_close_before_retiring():
    """Two connections of one worker (a reconnect racing the old one's EOF): retired only when both closed."""
    life, _ = lifecycle()
    life.connected(10, 0)
    life.connected(10, 0)
    life.reaped(10, aborted=False)
    actions = [life.disconnected(10, running=False), life.disconnected(10, running=False)]
    assert [NOTHING, retire(10)] == actions


# ---------------------------------------------------------------- late connections and the grace period


def test_late_connection_after_reaping_keeps_the_goodbye():
    """A short-lived worker reaped before its only connection was accepted is still counted as normal, once."""
    life, _ = lifecycle()
    life.reaped(11, aborted=False)
    life.connected(11, None)
    life.goodbye(11, "normal")
    life.disconnected(11, running=False)
    assert (NO_EXITS | {"normal": 1}, frozenset()) == (life.exits, life.tracked_pids)


def test_a_reaped_worker_awaits_its_late_connection_until_settled():
    """Reaped and unsettled, a worker's late connection is one to accept; never a pid that was not reaped, nor one
    settled already (its totals retired: a connection now would count them twice)."""
    life, clock = lifecycle()
    life.reaped(13, aborted=False)
    waiting = (life.reaped_awaiting(13), life.reaped_awaiting(14))
    clock.now += DEAD_CONNECTION_GRACE + 0.1
    life.sweep(set())
    assert ((True, False), False) == (waiting, life.reaped_awaiting(13))


def test_a_worker_that_never_connected_is_settled_after_the_grace():
    """No connection at all: counted as killed once the grace period has passed, and nothing is kept."""
    life, clock = lifecycle()
    life.reaped(12, aborted=False)
    before = life.sweep(set())
    clock.now += DEAD_CONNECTION_GRACE + 0.1
    after = life.sweep(set())
    assert (NOTHING, retire(12), NO_EXITS | {"killed": 1}) == (before, after, life.exits)
    assert frozenset() == life.tracked_pids


def test_dead_but_connected_is_closed_after_the_grace():
    """A reaped worker whose connection stays open (fd leaked to its child) is closed only after the grace."""
    life, clock = lifecycle()
    life.connected(13, 0)
    life.reaped(13, aborted=False)
    clock.now += DEAD_CONNECTION_GRACE - 0.5
    before = life.sweep(set())
    clock.now += 1.0
    after = life.sweep(set())
    assert (NOTHING, Actions(close=frozenset({13}))) == (before, after)


def test_late_connection_gets_the_whole_grace():
    """A connection accepted late from a reaped worker is closed only once the grace has passed since it arrived."""
    life, clock = lifecycle()
    life.reaped(13, aborted=False)
    clock.now += DEAD_CONNECTION_GRACE - 0.5
    life.connected(13, None)
    clock.now += 1.0  # past the grace since the reap, not since the connection
    before = life.sweep(set())
    clock.now += DEAD_CONNECTION_GRACE
    assert (NOTHING, Actions(close=frozenset({13}))) == (before, life.sweep(set()))


def test_closing_a_leaked_connection_settles_the_worker():
    """Once the channel closes the leaked connection, the worker is retired and counted."""
    life, clock = lifecycle()
    life.connected(13, 0)
    life.reaped(13, aborted=False)
    clock.now += DEAD_CONNECTION_GRACE + 1
    life.sweep(set())
    assert (retire(13), NO_EXITS | {"killed": 1}) == (life.disconnected(13, running=False), life.exits)


def test_live_workers_are_never_closed():
    """A live, connected worker is left alone by the sweep however long it lives."""
    life, clock = lifecycle()
    life.connected(14, 0)
    clock.now += 1000
    assert (NOTHING, NOTHING) == (life.sweep({14}), life.sweep({14}))


# ---------------------------------------------------------------- pid reuse and lost reaps


def test_reused_pid_settles_the_previous_worker():
    """A live worker connecting with the pid of one reaped but unsettled: the old one is counted and retired."""
    life, _ = lifecycle()
    life.reaped(15, aborted=True)
    actions = life.connected(15, 2)
    assert (retire(15), NO_EXITS | {"timeout": 1}) == (actions, life.exits)
    assert ReportVerdict(True, 2, True) == life.report(15, 2)


def test_second_reap_of_a_pid_counts_both_workers():
    """Two processes with one pid reaped before the first settled are two exits."""
    life, clock = lifecycle()
    life.reaped(16, aborted=False)
    life.reaped(16, aborted=True)
    clock.now += DEAD_CONNECTION_GRACE + 1
    life.sweep(set())
    assert NO_EXITS | {"killed": 1, "timeout": 1} == life.exits


def test_worker_never_reported_reaped_is_given_up_on():
    """A pid gunicorn stopped listing without child_exit reaching us is retired after the grace, no exit counted."""
    life, clock = lifecycle()
    life.connected(17, 0)
    life.disconnected(17, running=False)
    first = life.sweep(set())
    clock.now += DEAD_CONNECTION_GRACE + 1
    second = life.sweep(set())
    assert (NOTHING, retire(17), NO_EXITS, frozenset()) == (first, second, life.exits, life.tracked_pids)


def test_listed_worker_is_never_given_up_on():
    """A connected worker gunicorn still lists is kept however long it lives."""
    life, clock = lifecycle()
    life.connected(18, None)
    life.sweep({18})
    clock.now += DEAD_CONNECTION_GRACE + 1
    assert (NOTHING, frozenset({18})) == (life.sweep({18}), life.tracked_pids)
