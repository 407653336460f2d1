"""Worker health read from outside the workers: each live worker's ``/proc`` files, and the arbiter's own.

Runs in the arbiter. The runtime calls :meth:`ProcessHealth.take_readings` on the channel thread whenever
:meth:`ProcessHealth.seconds_until_due` says a report interval has passed, *without* its lock (the reads are
syscalls on other processes' files, ~50 µs each: bench/proc_reads.py), then applies them under the lock
(:meth:`ProcessHealth.apply`); gunicorn's main loop never waits for a read, and a worker stuck in a request or
holding its GIL is measured all the same, since nothing runs in the worker.

The readings live in a :class:`~otel_gunicorn._arbiter.merge.MergeStore` of their own, keyed by pid, so the merge
rules of the workers' reports hold here too. Every point carries the worker's ``gunicorn.worker.slot`` (the
arbiter's own carry none): ``process.cpu.time`` (a counter) is summed per slot over every worker that held it, a
dead worker's final time retired into the sum, so a slot's series only grows across replacements; memory, threads
and descriptors (up-down counters) are summed over live processes only, which is one process per slot.

The rules, for each pid:

* it is read while gunicorn lists it as a worker with a slot; a reading is applied only if gunicorn still lists it
  when the lock is taken (otherwise it was reaped in between, and its exit has settled it: applying the reading would
  count its CPU time twice);
* its exit (``child_exit`` after gunicorn reaped it, or gunicorn finding it gone): its final CPU time is reported
  (:func:`final_cpu`) and it is retired at once: its memory series go, its CPU time joins the slot's sum;
* exited but not yet reaped (a zombie): only its CPU time (final already) is kept, its memory series go;
* no longer listed, its exit never seen (a ``child_exit`` of the user's that does not call ours): its memory series
  go at once, and it is retired with its last reading after :data:`ABSENCE_GRACE`;
* listed again with another start time: the pid was reused, the previous process is retired first.

The final CPU time comes from the kernel's account of reaped children (``getrusage(RUSAGE_CHILDREN)``, read by the
main thread in ``child_exit``, right after gunicorn reaped the worker: :class:`ReapedChildren`), since ``/proc`` no
longer has the process: the worker's time up to its end rather than up to the last read, a report interval before.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._probes.process import CLOCK_TICKS, ProcessReading, read_process
from otel_gunicorn._snapshot import AttrKey, Snapshot, Value

#: seconds a pid may stay unlisted before its last reading is retired (its exit was not reported to us)
ABSENCE_GRACE = 2.0

#: (pid, slot, reading) of one read: slot None for the arbiter itself, reading None when it failed
Reading = tuple[int, int | None, ProcessReading | None]


class CpuTimes(NamedTuple):
    """CPU seconds in user and in kernel mode."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system


def final_cpu(last: CpuTimes | None, reaped: CpuTimes | None, elapsed: float, cpus: int) -> CpuTimes | None:
    """A worker's final CPU time: what the kernel accounted when it was reaped, checked against its last reading.

    Args:
        last: its CPU time as last read from ``/proc`` (None: never read, it lived less than a report interval).
        reaped: the CPU time of the children reaped since the previous exit (:meth:`ReapedChildren.take`); None:
            not known (the worker was not reaped by gunicorn's ``child_exit``).
        elapsed: seconds since ``last`` was read (since the previous round of reads when it never was).
        cpus: the CPUs the arbiter and its workers may run on.

    ``reaped`` is this worker's time, plus that of the processes it waited for, unless some other child of the
    arbiter was reaped since the previous exit (an exporter process, the dirty arbiter). It is taken when it is
    plausible: each mode at least what was read last (the kernel's times never go down, and ``/proc`` rounds them
    down to clock ticks), and no more in all than the worker could have used since, ``elapsed`` seconds on each CPU
    (plus the two clock ticks ``/proc`` rounded away). Otherwise it holds another process's time, or misses some,
    and ``last`` is kept: the series never goes down, and never takes another process's time in.
    """
    if reaped is None or last is None and reaped.total > elapsed * cpus:
        return last
    if last is None:
        return reaped
    if reaped.user < last.user or reaped.system < last.system:
        return last
    return reaped if reaped.total <= last.total + elapsed * cpus + 2 / CLOCK_TICKS else last


def children_cpu() -> CpuTimes:
    """The CPU time of every child this process has reaped so far (and of the children they reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuTimes(usage.ru_utime, usage.ru_stime)


class ReapedChildren:
    """The CPU time of the children reaped between two calls of :meth:`take`. Main thread only: gunicorn reaps
    there, and ``child_exit`` runs right after each reap, before the next."""

    def __init__(self, read: Callable[[], CpuTimes] = children_cpu) -> None:
        self._read = read
        self._seen = read()

    def take(self) -> CpuTimes:
        now = self._read()
        delta = CpuTimes(max(0.0, now.user - self._seen.user), max(0.0, now.system - self._seen.system))
        self._seen = now
        return delta


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), which its workers inherit."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _key(slot: int | None, **attributes: str) -> AttrKey:
    found: dict[str, str | int] = dict(attributes)
    if slot is not None:
        found[inst.SLOT_ATTRIBUTE] = slot
    return tuple(sorted(found.items()))


def cpu_points(cpu: CpuTimes, slot: int | None) -> Snapshot:
    mode = inst.CPU_MODE_ATTRIBUTE
    return {
        inst.PROCESS_CPU_TIME.meta: {
            _key(slot, **{mode: "user"}): cpu.user,
            _key(slot, **{mode: "system"}): cpu.system,
        }
    }


def reading_points(reading: ProcessReading, slot: int | None, cpu: CpuTimes) -> Snapshot:
    """One process's points (``slot`` None: the arbiter's); a zombie's are its CPU time only."""
    points = cpu_points(cpu, slot)
    if reading.dead:
        return points
    key = _key(slot)
    gauges: list[tuple[inst.Instrument, Value | None]] = [
        (inst.PROCESS_MEMORY_USAGE, reading.resident_bytes),
        (inst.PROCESS_MEMORY_VIRTUAL, reading.virtual_bytes),
        (inst.PROCESS_THREADS, reading.stat.threads),
        (inst.PROCESS_DESCRIPTORS, reading.descriptors),
    ]
    for instrument, value in gauges:
        if value is not None:
            points[instrument.meta] = {key: value}
    return points


@dataclasses.dataclass
class _Tracked:
    """A worker pid the store holds readings of."""

    slot: int
    start_ticks: int
    cpu: CpuTimes
    read_at: float
    absent_since: float | None = None


class ProcessHealth:
    """The workers' and the arbiter's process metrics, read every ``interval`` seconds.

    Args:
        interval: seconds between two rounds of reads (the report interval).
        clock: monotonic seconds (injected so tests control time).
        read: reads one process (injected so tests control what ``/proc`` says).
        own_pid: the arbiter's pid.
        cpus: see :func:`final_cpu`.
    """

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[int], ProcessReading | None] = read_process,
        own_pid: int | None = None,
        cpus: int | None = None,
    ) -> None:
        self.store = MergeStore()
        self._interval = interval
        self._clock = clock
        self._read = read
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._cpus = usable_cpus() if cpus is None else cpus
        self._tracked: dict[int, _Tracked] = {}
        self._next_round = clock()
        self._last_round = clock()
        self.reads = {"read": 0, "failed": 0}

    # ---------------------------------------------------------------- the channel thread, without the lock

    def seconds_until_due(self) -> float:
        """Seconds until the next round of reads is due (0 or less: now)."""
        return self._next_round - self._clock()

    def take_readings(self, workers: Iterable[tuple[int, int | None]]) -> list[Reading]:
        """Read the arbiter and each of ``workers`` (pid, slot) that has a slot, and schedule the next round."""
        now = self._clock()
        self._next_round = now + self._interval
        readings: list[Reading] = [(self._own_pid, None, self._read(self._own_pid))]
        readings += [(pid, slot, self._read(pid)) for pid, slot in workers if slot is not None]
        return readings

    # ---------------------------------------------------------------- under the runtime lock

    def apply(self, readings: Iterable[Reading], listed: Collection[int]) -> None:
        """Apply a round of readings; ``listed``: the pids gunicorn lists as workers now."""
        now = self._last_round = self._clock()
        for pid, slot, reading in readings:
            self.reads["failed" if reading is None else "read"] += 1
            if reading is None:
                continue
            cpu = CpuTimes(reading.user_seconds, reading.system_seconds)
            if slot is None:
                self.store.report(pid, None, reading_points(reading, None, cpu))
            elif pid in listed:
                self._worker_read(pid, slot, reading, cpu, now)
        self._check_absence(listed, now)

    def _worker_read(self, pid: int, slot: int, reading: ProcessReading, cpu: CpuTimes, now: float) -> None:
        tracked = self._tracked.get(pid)
        if tracked is not None and tracked.start_ticks != reading.stat.start_ticks:
            self.exited(pid, tracked.slot, None)  # a new process with the pid of one whose exit we missed
        self._tracked[pid] = _Tracked(slot, reading.stat.start_ticks, cpu, now)
        self.store.report(pid, None, reading_points(reading, slot, cpu))

    def _check_absence(self, listed: Collection[int], now: float) -> None:
        for pid, tracked in list(self._tracked.items()):
            if pid in listed:
                tracked.absent_since = None
            elif tracked.absent_since is None:
                tracked.absent_since = now
                self.store.drop_gauges(pid)  # not a worker any more: dead, whether we hear of its exit or not
            elif now - tracked.absent_since > ABSENCE_GRACE:
                self.exited(pid, tracked.slot, None)

    def exited(self, pid: int, slot: int | None, reaped: CpuTimes | None) -> None:
        """Worker ``pid`` (of ``slot``) exited; ``reaped``: the CPU time :class:`ReapedChildren` saw at its reaping."""
        tracked = self._tracked.pop(pid, None)
        if tracked is not None:
            slot = tracked.slot
        if slot is None:  # never read, and its slot unknown: nothing of it to report
            self.store.retire(pid)
            return
        last = tracked.cpu if tracked is not None else None
        since = tracked.read_at if tracked is not None else self._last_round
        final = final_cpu(last, reaped, self._clock() - since, self._cpus)
        if final is not None and final != last:
            self.store.report(pid, None, cpu_points(final, slot))
        self.store.drop_gauges(pid)
        self.store.retire(pid)

    def metrics(self) -> Snapshot:
        """The merged process metrics, and the reads counter."""
        snapshot = self.store.merged()
        snapshot[inst.PROCESS_READS.meta] = {(("outcome", outcome),): count for outcome, count in self.reads.items()}
        return snapshot
