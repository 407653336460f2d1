"""The merge store: every worker's latest cumulative snapshot, plus what dead workers left behind.

Pure data structure, no threads, no locks: the caller (the arbiter's channel thread and main thread) serialises
access. The rules (ARCHITECTURE.md):

* counters and histograms are summed over every worker, live or dead; a dead worker's last totals are *retired*
  into a permanent sum, so the merged value never decreases while the arbiter lives;
* up-down counters are summed over live workers only;
* gauges are one series per live worker, labelled ``gunicorn.worker.slot``.

A worker is *retired* only when it is both dead (``child_exit``) and disconnected (channel EOF), because its last
report may still be in the socket buffer when the arbiter reaps it. Sums are exact (integers, or ``Fraction`` for
floats) so the result depends neither on arrival order nor on how many workers died along the way.
"""

from __future__ import annotations

import dataclasses
import math
import time
from fractions import Fraction

from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._snapshot import AttrKey, HistogramValue, Kind, MetricMeta, Snapshot, Value

Exact = int | Fraction | float  # float only for inf/nan, which have no exact form


@dataclasses.dataclass
class _ExactHistogram:
    count: int
    sum: Exact
    bounds: tuple[float, ...]
    counts: list[int]
    min: float
    max: float

    def add(self, value: HistogramValue) -> bool:
        """Add ``value`` in place; False (and nothing added) when its bucket boundaries differ."""
        if value.bounds != self.bounds:
            return False
        self.count += value.count
        self.sum = _exact_add(self.sum, value.sum)
        self.counts = [a + b for a, b in zip(self.counts, value.counts)]
        self.min = min(self.min, value.min)
        self.max = max(self.max, value.max)
        return True

    def result(self) -> HistogramValue:
        return HistogramValue(self.count, _inexact(self.sum), self.bounds, tuple(self.counts), self.min, self.max)

    def copy(self) -> _ExactHistogram:
        return dataclasses.replace(self, counts=list(self.counts))

    @classmethod
    def of(cls, value: HistogramValue) -> _ExactHistogram:
        return cls(value.count, _exact(value.sum), value.bounds, list(value.counts), value.min, value.max)


@dataclasses.dataclass
class _Worker:
    slot: int | None
    snapshot: Snapshot = dataclasses.field(default_factory=dict)
    alive: bool = True
    connected: bool = True
    died_at: float | None = None


class MergeStore:
    """Latest snapshot per worker pid, retired totals, and the merged view."""

    def __init__(self) -> None:
        self._workers: dict[int, _Worker] = {}
        self._retired: dict[MetricMeta, dict[AttrKey, Exact | _ExactHistogram]] = {}
        #: points the latest merge dropped because their histogram bucket boundaries disagreed with other workers'
        #: (or a histogram and a number shared one name); only workers running different code can cause it
        self.conflicts = 0

    # ---------------------------------------------------------------- events

    def connected(self, pid: int, slot: int | None) -> None:
        """A worker opened (or re-opened) its channel connection."""
        worker = self._workers.get(pid)
        if worker is not None and not worker.alive:  # pid reused by a new process: the old one is gone for good
            self.retire(pid)
            worker = None
        if worker is None:
            self._workers[pid] = _Worker(slot)
        else:
            worker.connected = True
            worker.slot = slot if slot is not None else worker.slot

    def knows(self, pid: int) -> bool:
        """Whether the store holds a record of ``pid`` (it connected and was not retired yet)."""
        return pid in self._workers

    def report(self, pid: int, slot: int | None, snapshot: Snapshot) -> None:
        """Replace the worker's latest cumulative snapshot."""
        worker = self._workers.setdefault(pid, _Worker(slot))
        if slot is not None:
            worker.slot = slot
        worker.snapshot = snapshot

    def disconnected(self, pid: int) -> bool:
        """The worker's connection closed; retire it if it is also known dead. True when it was retired now."""
        worker = self._workers.get(pid)
        if worker is None:
            return False
        worker.connected = False
        return not worker.alive and self.retire(pid)

    def exited(self, pid: int, now: float | None = None) -> bool:
        """The worker process is gone: its gauges vanish now; its totals are retired once its connection closes.

        True when it was retired now (or held no data at all)."""
        worker = self._workers.get(pid)
        if worker is None:
            return True
        worker.alive = False
        worker.died_at = time.monotonic() if now is None else now
        return not worker.connected and self.retire(pid)

    def retire(self, pid: int) -> bool:
        """Fold the worker's counters and histograms into the permanent totals and forget it."""
        worker = self._workers.pop(pid, None)
        if worker is None:
            return False
        for meta, points in worker.snapshot.items():
            if meta.kind.is_total:
                retired = self._retired.setdefault(meta, {})
                for key, value in points.items():
                    self._fold(retired, key, value)
        return True

    def dead_but_connected(self, older_than: float, now: float | None = None) -> list[int]:
        """Pids dead for more than ``older_than`` seconds whose connection is still open (an fd leaked to a child)."""
        now = time.monotonic() if now is None else now
        return [
            pid
            for pid, w in self._workers.items()
            if not w.alive and w.connected and w.died_at is not None and now - w.died_at > older_than
        ]

    # ---------------------------------------------------------------- views

    @property
    def worker_pids(self) -> list[int]:
        """Pids the store holds data for (live, or dead with data not yet retired)."""
        return list(self._workers)

    def live_totals(self, name: str) -> dict[int, float]:
        """Per live worker pid, the sum of its latest points of metric ``name`` (workers without it are left out)."""
        totals = {}
        for pid, worker in self._workers.items():
            if worker.alive:
                values = [v for meta, pts in worker.snapshot.items() if meta.name == name for v in pts.values()]
                if values:
                    totals[pid] = float(sum(v for v in values if not isinstance(v, HistogramValue)))
        return totals

    def merged(self) -> Snapshot:
        """The merged view of every metric, by the merge rules (sets :attr:`conflicts` for this merge)."""
        self.conflicts = 0
        totals: dict[MetricMeta, dict[AttrKey, Exact | _ExactHistogram]] = {}
        gauges: Snapshot = {}
        for meta, retired in self._retired.items():
            totals[meta] = {k: v.copy() if isinstance(v, _ExactHistogram) else v for k, v in retired.items()}
        for worker in self._workers.values():
            for meta, points in worker.snapshot.items():
                if meta.kind is Kind.GAUGE:
                    if worker.alive and worker.slot is not None:
                        target_points = gauges.setdefault(meta, {})
                        for key, value in points.items():
                            target_points[_with_slot(key, worker.slot)] = value
                    continue
                if meta.kind is Kind.UPDOWNCOUNTER and not worker.alive:
                    continue
                sums = totals.setdefault(meta, {})
                for key, value in points.items():
                    self._fold(sums, key, value)
        result: Snapshot = {meta: {k: _result(v) for k, v in pts.items()} for meta, pts in totals.items()}
        result.update(gauges)
        return result

    def _fold(self, target: dict[AttrKey, Exact | _ExactHistogram], key: AttrKey, value: Value) -> None:
        current = target.get(key)
        # Fast path for the common case, integer counters: exact already, no Fraction needed.
        if type(value) is int and (current is None or type(current) is int):
            target[key] = value if current is None else current + value
            return
        if isinstance(value, HistogramValue):
            if current is None:
                target[key] = _ExactHistogram.of(value)
            elif not (isinstance(current, _ExactHistogram) and current.add(value)):
                self.conflicts += 1
        elif isinstance(current, _ExactHistogram):
            self.conflicts += 1
        else:
            target[key] = _exact(value) if current is None else _exact_add(current, value)


def _with_slot(key: AttrKey, slot: int) -> AttrKey:
    return tuple(sorted(dict(key, **{SLOT_ATTRIBUTE: slot}).items()))


def _exact(value: int | float | Fraction) -> Exact:
    if isinstance(value, (int, Fraction)):
        return value
    return Fraction(value) if math.isfinite(value) else value


def _exact_add(a: Exact, b: int | float | Fraction) -> Exact:
    b = _exact(b)
    if isinstance(a, float) or isinstance(b, float):  # inf or nan: exactness is moot
        return _float(a) + _float(b)
    return a + b


def _inexact(value: Exact) -> int | float:
    return value if isinstance(value, int) else _float(value)


def _float(value: Exact) -> float:
    # An exact sum can leave the float range (two workers near 1.8e308); float() would raise OverflowError.
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _result(value: Exact | _ExactHistogram) -> Value:
    return value.result() if isinstance(value, _ExactHistogram) else _inexact(value)
