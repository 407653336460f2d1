"""The merge store: every worker's latest cumulative snapshot, plus what dead workers left behind.

Runs in the arbiter. Pure data structure: no threads, no locks, no notion of a worker's life — the caller (the
runtime, under its lock) decides with :mod:`otel_gunicorn._arbiter.lifecycle` when a worker's gauges go and when its
totals retire. The merge rules (docs/usage.md, "How the numbers are merged"):

* counters and histograms are summed over every worker, live or dead; a dead worker's last totals are *retired*
  into a permanent sum, so the merged value never decreases while the arbiter lives;
* up-down counters are summed over live workers only;
* gauges are one series per live worker, labelled ``gunicorn.worker.slot`` (a dirty worker's:
  ``gunicorn.dirty.worker.slot``, so the two pools' series never collide).

Sums are exact (integers, or ``Fraction`` for floats) so the result depends neither on arrival order nor on how many
workers died along the way.
"""

from __future__ import annotations

import dataclasses
import math
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
class _Held:
    slot: int | None
    snapshot: Snapshot
    slot_attribute: str = SLOT_ATTRIBUTE


class MergeStore:
    """Latest snapshot per worker pid, retired totals, and the merged view."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._retired: dict[MetricMeta, dict[AttrKey, Exact | _ExactHistogram]] = {}
        #: points the latest merge dropped because their histogram bucket boundaries disagreed with other workers'
        #: (or a histogram and a number shared one name); only workers running different code can cause it
        self.conflicts = 0

    # ---------------------------------------------------------------- updates

    def report(self, pid: int, slot: int | None, snapshot: Snapshot, slot_attribute: str = SLOT_ATTRIBUTE) -> None:
        """Replace the worker's latest cumulative snapshot; its gauges are labelled ``slot_attribute`` = ``slot``
        (None: left out)."""
        self._held[pid] = _Held(slot, snapshot, slot_attribute)

    def drop_gauges(self, pid: int) -> None:
        """The worker is dead: its gauges and up-down counters leave the merged view, its totals stay until retired."""
        held = self._held.get(pid)
        if held is not None:
            held.snapshot = {meta: points for meta, points in held.snapshot.items() if meta.kind.is_total}

    def retire(self, pid: int) -> None:
        """Fold the worker's counters and histograms into the permanent totals and forget it."""
        held = self._held.pop(pid, None)
        if held is None:
            return
        for meta, points in held.snapshot.items():
            if meta.kind.is_total:
                retired = self._retired.setdefault(meta, {})
                for key, value in points.items():
                    self._fold(retired, key, value)

    # ---------------------------------------------------------------- views

    @property
    def worker_pids(self) -> list[int]:
        """Pids the store holds data for (live, or dead with totals not yet retired)."""
        return list(self._held)

    def sums_by_pid(self, name: str) -> dict[int, float]:
        """Per pid, the sum of its latest points of metric ``name`` (pids without it are left out; a dead worker's
        gauges and up-down counters are already gone)."""
        sums = {}
        for pid, held in self._held.items():
            values = [v for meta, pts in held.snapshot.items() if meta.name == name for v in pts.values()]
            if values:
                sums[pid] = float(sum(v for v in values if not isinstance(v, HistogramValue)))
        return sums

    def merged(self) -> Snapshot:
        """The merged view of every metric, by the merge rules (sets :attr:`conflicts` for this merge)."""
        self.conflicts = 0
        totals: dict[MetricMeta, dict[AttrKey, Exact | _ExactHistogram]] = {}
        gauges: Snapshot = {}
        for meta, retired in self._retired.items():
            totals[meta] = {k: v.copy() if isinstance(v, _ExactHistogram) else v for k, v in retired.items()}
        for held in self._held.values():
            for meta, points in held.snapshot.items():
                if meta.kind is Kind.GAUGE:
                    if held.slot is not None:
                        target_points = gauges.setdefault(meta, {})
                        for key, value in points.items():
                            target_points[_with_slot(key, held.slot_attribute, held.slot)] = value
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


def _with_slot(key: AttrKey, attribute: str, slot: int) -> AttrKey:
    return tuple(sorted(dict(key, **{attribute: slot}).items()))


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
