"""Worker lifecycle in the arbiter: slots, connections, deaths, exit reasons, and when a worker's totals retire.

Runs in the arbiter. Pure bookkeeping: no threads, no locks, no I/O, no gunicorn objects, time from an injected clock.
The runtime calls it under its lock from two threads whose events race — the main thread reaps a worker
(``child_exit``, or ``worker_exit`` when gunicorn finds the process already gone) while the channel thread may still
be reading that worker's last report, goodbye and end of stream — and applies what each event returns to the merge
store and the channel.

The rules:

* **slots**: a worker about to be forked gets the smallest slot no live worker holds, so slots are reused and the
  ``gunicorn.worker.slot`` label stays bounded by the worker count;
* **gauges** (and up-down counters) of a worker vanish as soon as it is known dead: reaped, or its connection closed
  while the process was no longer running;
* **totals** (counters, histograms) are retired into the permanent sums only when the worker is reaped *and* has no
  connection left open, because its last report may still be in the socket when it is reaped. The same moment
  *settles* its exit: the exit is counted once, by reason;
* **exit reasons**: gunicorn does not hand ``child_exit`` the exit status, so the reason is put together from what is
  known for certain — ``aborted`` (set by the arbiter before it kills a worker that missed its heartbeat) means
  ``timeout``; else a goodbye the worker sent from ``worker_exit`` says ``normal`` or ``error``; else the process was
  ``killed`` by a signal it could not handle (SIGKILL, the OOM killer, a crash);
* **grace**: a reaped worker that never connected may still connect late (its only connection was in the listen
  backlog when it was reaped; the channel accepts it though /proc no longer shows the process, because
  :meth:`WorkerLifecycle.reaped_awaiting` says so): it is settled once ``grace`` seconds pass without a connection.
  A dead worker's connection that stays open longer than ``grace`` (its fd leaked into a process it forked) is
  closed.

Hazards:

* pid reuse: a pid is free again once reaped. A connection from a pid gunicorn lists as a live worker, or a second
  reap, while the previous holder of that pid is still unsettled means a new process: the previous one is settled
  first. Connections still open at that moment cannot be told apart and stay with the new process;
* a pid the runtime no longer lists as a live worker, yet never reported reaped (a configuration whose own
  ``child_exit`` does not call ours), is given up on after ``grace``: its totals retire, no exit is counted;
* the listen backlog is invisible: a worker that re-opened its connection just before dying (after a send timed out)
  is settled when reaped if that connection was not accepted yet, and a connection accepted after its worker settled
  is taken for a live worker of unknown slot until the sweep gives up on it; its totals may then count twice. Both
  need a worker that reconnects as it dies, or an arbiter too busy to accept for seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

#: seconds a dead worker's channel may stay silent (never connected) or open (an fd leaked) before it is settled
DEAD_CONNECTION_GRACE = 2.0
REASONS = ("timeout", "killed", "error", "normal")
GOODBYE_REASONS = frozenset({"normal", "error"})


@dataclasses.dataclass(frozen=True)
class Actions:
    """What the caller must do after an event; every field is a set of pids."""

    #: workers now known dead: drop their gauges and up-down counters from the merge store
    drop_gauges: frozenset[int] = frozenset()
    #: workers settled: fold their totals into the permanent sums and forget them
    retire: frozenset[int] = frozenset()
    #: dead workers whose channel connections the channel must close
    close: frozenset[int] = frozenset()

    def __or__(self, other: Actions) -> Actions:
        return Actions(self.drop_gauges | other.drop_gauges, self.retire | other.retire, self.close | other.close)


NOTHING = Actions()


class ReportVerdict(NamedTuple):
    """Whether to keep a report, and how."""

    accepted: bool
    #: the slot to label the worker's gauges with (None: unknown, its gauges cannot be shown)
    slot: int | None = None
    #: False: the worker is dead, keep only its totals
    live: bool = False


REJECTED = ReportVerdict(accepted=False)


@dataclasses.dataclass
class _Worker:
    """One pid's record, from its first connection or its reaping until it is settled."""

    slot: int | None = None
    connections: int = 0
    #: it had a connection: everything it sent on one arrives before that connection's end of stream
    heard_from: bool = False
    #: known dead (reaped, closed while not running, or given up on): its gauges are gone
    gone: bool = False
    reaped: bool = False
    #: not reaped, but no longer a live worker for longer than the grace period: settled without counting an exit
    abandoned: bool = False
    #: dead for good: when the wait for its connections began (reaping, giving up, or a late connection)
    waiting_since: float = 0.0
    #: not reaped, and missing from the runtime's live workers since this moment
    absent_since: float | None = None
    aborted: bool = False
    goodbye: str | None = None

    @property
    def finished(self) -> bool:
        """Dead for good: nothing can bring it back, only its last connections can still arrive or close."""
        return self.reaped or self.abandoned

    @property
    def reason(self) -> str:
        return "timeout" if self.aborted else self.goodbye or "killed"


class WorkerLifecycle:
    """The arbiter's view of its workers, driven by events, telling the caller what each event means for the data.

    Args:
        clock: monotonic seconds (injected so tests control time).
        grace: see :data:`DEAD_CONNECTION_GRACE`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, grace: float = DEAD_CONNECTION_GRACE) -> None:
        self._clock = clock
        self._grace = grace
        self._workers: dict[int, _Worker] = {}
        self._exits = dict.fromkeys(REASONS, 0)

    @property
    def exits(self) -> dict[str, int]:
        """Settled exits by reason (every reason present, from 0)."""
        return dict(self._exits)

    @property
    def tracked_pids(self) -> frozenset[int]:
        """Pids with a record: connected at least once, or reaped, and not settled yet."""
        return frozenset(self._workers)

    def reaped_awaiting(self, pid: int) -> bool:
        """``pid`` was reaped (or given up on) and is not settled: a connection it opened before dying may still
        arrive within the grace period, from a process /proc no longer shows."""
        worker = self._workers.get(pid)
        return worker is not None and worker.finished

    # ---------------------------------------------------------------- events

    @staticmethod
    def assign_slot(slots_in_use: Iterable[int | None]) -> int:
        """The slot for a worker about to be forked: the smallest one no live worker holds."""
        used = set(slots_in_use)
        return next(slot for slot in itertools.count() if slot not in used)

    def connected(self, pid: int, slot: int | None) -> Actions:
        """A channel connection from ``pid`` was accepted.

        Args:
            pid: the peer, as the kernel says.
            slot: the slot of gunicorn's live worker with this pid; None when gunicorn lists no live worker with it
                (it was reaped already, or is not listed yet).
        """
        actions, worker = NOTHING, self._workers.get(pid)
        if worker is not None and worker.finished and slot is not None:  # a new process got a dead worker's pid
            actions, worker = self._replace(pid, worker)
        elif worker is None:
            worker = self._workers[pid] = _Worker()
        worker.connections += 1
        worker.heard_from = True
        if slot is not None and not worker.gone:
            worker.slot = slot
        if worker.finished:  # a late connection: it gets the whole grace period to deliver its last words
            worker.waiting_since = self._clock()
        return actions

    def report(self, pid: int, slot: int | None) -> ReportVerdict:
        """A snapshot from ``pid`` arrived; ``slot`` as for :meth:`connected`."""
        worker = self._workers.get(pid)
        if worker is None:  # settled: its totals are retired, taking this one too would count them twice
            return REJECTED
        if slot is not None and not worker.gone:
            worker.slot = slot
        return ReportVerdict(accepted=True, slot=worker.slot, live=not worker.gone)

    def goodbye(self, pid: int, reason: str) -> None:
        """``pid`` announced a graceful (``normal``) or failing (``error``) exit; anything else is ignored."""
        worker = self._workers.get(pid)
        if worker is not None and reason in GOODBYE_REASONS:
            worker.goodbye = reason

    def disconnected(self, pid: int, running: bool) -> Actions:
        """One of ``pid``'s connections closed; ``running``: the process still existed (not a zombie) then."""
        worker = self._workers.get(pid)
        if worker is None:
            return NOTHING
        worker.connections = max(0, worker.connections - 1)
        if worker.finished and worker.connections == 0:
            return self._settle(pid)
        if not running and not worker.gone:  # gone before it was reaped: its gauges go now
            worker.gone = True
            return Actions(drop_gauges=frozenset({pid}))
        return NOTHING

    def reaped(self, pid: int, aborted: bool) -> Actions:
        """The arbiter reaped ``pid`` (``child_exit``) or found it gone (``worker_exit``); ``aborted``: its timeout."""
        actions, worker = NOTHING, self._workers.get(pid)
        if worker is not None and worker.reaped:  # a second process with this pid died before the first settled
            actions, worker = self._replace(pid, worker)
        elif worker is None:
            worker = self._workers[pid] = _Worker()
        if not worker.gone and worker.heard_from:
            actions |= Actions(drop_gauges=frozenset({pid}))
        worker.gone = worker.reaped = True
        worker.aborted = aborted
        worker.waiting_since = self._clock()
        if worker.heard_from and worker.connections == 0:
            actions |= self._settle(pid)
        return actions

    def sweep(self, live_pids: Collection[int]) -> Actions:
        """The periodic check (at least once a second): settle and give up on what waited long enough.

        Args:
            live_pids: the pids gunicorn lists as live workers right now.
        """
        now = self._clock()
        actions = NOTHING
        for pid, worker in list(self._workers.items()):
            if not worker.finished:
                actions |= self._check_absence(pid, worker, pid in live_pids, now)
            if not worker.finished:
                continue
            waited = now - worker.waiting_since > self._grace
            if worker.connections == 0 and (worker.heard_from or waited):
                actions |= self._settle(pid)
            elif worker.connections > 0 and waited:
                actions |= Actions(close=frozenset({pid}))
        return actions

    # ---------------------------------------------------------------- internals

    def _check_absence(self, pid: int, worker: _Worker, listed: bool, now: float) -> Actions:
        if listed:
            worker.absent_since = None
        elif worker.absent_since is None:
            worker.absent_since = now
        elif now - worker.absent_since > self._grace:  # never reported reaped: stop waiting for that
            worker.abandoned = True
            worker.waiting_since = now
            if not worker.gone:
                worker.gone = True
                return Actions(drop_gauges=frozenset({pid}))
        return NOTHING

    def _replace(self, pid: int, previous: _Worker) -> tuple[Actions, _Worker]:
        """Settle the previous holder of a reused pid; the new record inherits its (indistinguishable) connections."""
        actions = self._settle(pid)
        worker = self._workers[pid] = _Worker(connections=previous.connections)
        return actions, worker

    def _settle(self, pid: int) -> Actions:
        worker = self._workers.pop(pid)
        if worker.reaped:
            self._exits[worker.reason] += 1
        return Actions(retire=frozenset({pid}))
