"""The arbiter's view of gunicorn's dirty pool (gunicorn >= 25): dirty workers' slots, lives and exits, and the pool
metrics made from them.

Runs in the arbiter. Pure bookkeeping, like :mod:`otel_gunicorn._arbiter.lifecycle`, whose rules it reuses for gauges,
totals, grace and exit reasons: no threads, no locks, no I/O, no gunicorn objects; whether a pid is still a live dirty
worker (only ``/proc`` knows) comes in through a function. The runtime calls it under its lock.

Dirty workers are not this arbiter's children: gunicorn's *dirty arbiter* (this arbiter's child) forks them, reaps
them and runs the dirty hooks, so this arbiter sees neither a ``pre_fork`` nor a ``child_exit`` for them. Instead:

* **slots** are given here, when a dirty worker's first channel connection is accepted (the channel has checked that
  its parent is the dirty arbiter): the smallest ``gunicorn.dirty.worker.slot`` no live dirty worker holds, freed
  once the worker is known dead. gunicorn's ``dirty_post_fork`` would be too late to tell the child anything: it runs
  in the dirty arbiter after the fork;
* **reaping**: a dirty worker counts as reaped when the sweep (at least once a second) finds it no longer running as
  a child of the dirty arbiter: exited, a zombie, or orphaned by the dirty arbiter's death;
* **timeouts**: the dirty arbiter aborts a dirty worker that missed its heartbeat with SIGABRT, which only the worker
  sees; the worker says so in its goodbye (``timeout``), taken here as the dirty arbiter's abort. (An HTTP worker may
  not say ``timeout``: its arbiter knows.) A worker too stuck to handle the abort is killed next, and counts as
  ``killed``;
* **limit**: only the dirty arbiter knows how many workers it keeps; it reports that number itself, and it is shown
  while that process is gunicorn's current dirty arbiter.

Hazards: a dirty worker counts in ``gunicorn.dirty.workers`` from its first report on (it sends one as it boots, or
within seconds when it booted before the channel was bound); a pid reused by a new dirty worker within a second of
the previous one's death is taken for the same worker, as the lifecycle's pid-reuse hazards say.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.lifecycle import DEAD_CONNECTION_GRACE, NOTHING, Actions, ReportVerdict, WorkerLifecycle
from otel_gunicorn._snapshot import Snapshot

STATE_ATTRIBUTE = "gunicorn.dirty.worker.state"
EXIT_REASON_ATTRIBUTE = "gunicorn.dirty.worker.exit.reason"


class DirtyPool:
    """The dirty workers this arbiter has heard from, driven by channel events and the sweep.

    Args:
        clock: monotonic seconds (injected so tests control time).
        grace: see :data:`otel_gunicorn._arbiter.lifecycle.DEAD_CONNECTION_GRACE`.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, grace: float = DEAD_CONNECTION_GRACE) -> None:
        self.lifecycle = WorkerLifecycle(clock=clock, grace=grace)
        #: live dirty workers (not known dead) and their slots
        self._slots: dict[int, int] = {}
        #: dirty workers whose death the sweep has not seen yet
        self._running: set[int] = set()
        #: dirty workers that said they were aborted (SIGABRT from the dirty arbiter)
        self._aborted: set[int] = set()
        #: the latest limit report: (dirty arbiter pid, its snapshot)
        self._limit: tuple[int, Snapshot] | None = None

    def tracks(self, pid: int) -> bool:
        """``pid`` is a dirty worker whose record is not settled: its events belong here."""
        return pid in self.lifecycle.tracked_pids

    @property
    def slots(self) -> dict[int, int]:
        """Live dirty workers' slots, by pid."""
        return dict(self._slots)

    # ---------------------------------------------------------------- channel events

    def connected(self, pid: int, running: bool) -> Actions:
        """A dirty worker's connection was accepted; ``running``: it is alive (else: a dead one's late connection)."""
        slot = self._slots.get(pid)
        new = slot is None and running
        if new:  # a first connection, or a new process with a dead dirty worker's pid (the lifecycle settles that one)
            slot = WorkerLifecycle.assign_slot(self._slots.values())
        actions = self._released(self.lifecycle.connected(pid, slot))
        if new and slot is not None:  # after _released, which frees a replaced predecessor's slot
            self._slots[pid] = slot
            self._running.add(pid)
        return actions

    def report(self, pid: int) -> ReportVerdict:
        return self.lifecycle.report(pid, self._slots.get(pid))

    def goodbye(self, pid: int, reason: str) -> None:
        if reason == "timeout":
            if self.tracks(pid):
                self._aborted.add(pid)
        else:
            self.lifecycle.goodbye(pid, reason)

    def disconnected(self, pid: int, running: bool) -> Actions:
        return self._released(self.lifecycle.disconnected(pid, running))

    def arbiter_reported(self, pid: int, snapshot: Snapshot) -> None:
        """The dirty arbiter ``pid`` reported the pool's limit (only ``gunicorn.dirty.worker.limit`` is kept)."""
        points = next((p for meta, p in snapshot.items() if meta.name == inst.DIRTY_WORKER_LIMIT.name), None)
        if points is not None:
            self._limit = (pid, {inst.DIRTY_WORKER_LIMIT.meta: dict(points)})

    def sweep(self, alive: Callable[[int], bool]) -> Actions:
        """The periodic check: dirty workers no longer ``alive`` are reaped; then the lifecycle's own sweep.

        Args:
            alive: whether a pid is still running as a child of the current dirty arbiter.
        """
        actions = NOTHING
        for pid in [pid for pid in self._running if not alive(pid)]:
            self._running.discard(pid)
            actions |= self.lifecycle.reaped(pid, aborted=pid in self._aborted)
        return self._released(actions | self.lifecycle.sweep(self._running))

    def _released(self, actions: Actions) -> Actions:
        """Free the slots of dirty workers now known dead, forget the settled ones; pass ``actions`` on."""
        for pid in actions.drop_gauges | actions.retire:
            self._slots.pop(pid, None)
        for pid in actions.retire:
            self._aborted.discard(pid)
            self._running.discard(pid)
        return actions

    # ---------------------------------------------------------------- the pool metrics

    def metrics(self, dirty_arbiter_pid: int | None, active_calls: Mapping[int, float]) -> Snapshot:
        """Limit, busy/idle dirty workers and exits; empty where there is no dirty pool.

        Args:
            dirty_arbiter_pid: gunicorn's current dirty arbiter (None: there is none).
            active_calls: ``gunicorn.dirty.calls.active`` by pid, from the dirty workers' latest reports.
        """
        snapshot: Snapshot = {}
        if self._limit is not None and self._limit[0] == dirty_arbiter_pid:
            snapshot.update(self._limit[1])
        if self._slots:
            busy = sum(1 for pid in self._slots if active_calls.get(pid, 0) > 0)
            snapshot[inst.DIRTY_WORKER_COUNT.meta] = {
                ((STATE_ATTRIBUTE, "busy"),): busy,
                ((STATE_ATTRIBUTE, "idle"),): len(self._slots) - busy,
            }
        exits = self.lifecycle.exits
        if dirty_arbiter_pid or self._slots or any(exits.values()):
            snapshot[inst.DIRTY_WORKER_EXITS.meta] = {
                ((EXIT_REASON_ATTRIBUTE, reason),): count for reason, count in exits.items()
            }
        return snapshot
