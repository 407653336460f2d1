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

Exemplars (carried by a report's points, see :class:`~otel_gunicorn._snapshot.ExemplarPoints`) are not totals but
samples, and a report carries only those sampled since the worker's previous one: the store keeps, per counter or
histogram series, the newest exemplar of each bucket (of the counter) that any report ever brought, live worker or
dead — an exemplar describes a real past request, and stays until a newer one of its bucket replaces it. That is
bounded by the series the merged view keeps anyway, times their buckets.

The merged view is kept up to date incrementally: an update marks the metrics whose inputs it changed (a report is
compared with the worker's previous one, exactly: see :func:`~otel_gunicorn._snapshot.fingerprint`), and
:meth:`MergeStore.merged` re-merges only those. A metric whose inputs did not change keeps the very same points
dict from one merged view to the next, which is what lets the Prometheus endpoint reuse what it rendered from it
(``exposition_cache.py``); :attr:`MergeStore.generation` counts the changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from fractions import Fraction

from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._snapshot import (
    AttrKey,
    Exemplar,
    HistogramValue,
    Kind,
    MetricMeta,
    Snapshot,
    Value,
    exemplars_of,
    fingerprint,
    newest_per_bucket,
    with_exemplars,
)

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
    #: fingerprints of ``snapshot``'s points, by metric, computed when first needed
    fingerprints: dict[MetricMeta, bytes] = dataclasses.field(default_factory=dict)

    def fingerprint(self, meta: MetricMeta) -> bytes:
        found = self.fingerprints.get(meta)
        if found is None:
            found = self.fingerprints[meta] = fingerprint(self.snapshot[meta])
        return found


_Merged = dict[AttrKey, Value]


class MergeStore:
    """Latest snapshot per worker pid, retired totals, and the merged view."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._retired: dict[MetricMeta, dict[AttrKey, Exact | _ExactHistogram]] = {}
        #: the newest exemplars ever reported, by metric and series (at most one per bucket of the reporting worker)
        self._exemplars: dict[MetricMeta, dict[AttrKey, tuple[Exemplar, ...]]] = {}
        #: points the latest merge dropped because their histogram bucket boundaries disagreed with other workers'
        #: (or a histogram and a number shared one name); only workers running different code can cause it
        self.conflicts = 0
        #: counts the updates that changed the merged view (a report equal to the worker's previous one does not)
        self.generation = 0
        # the merged view: points and conflicts by metric; metrics in _dirty need merging again
        self._merged: dict[MetricMeta, tuple[_Merged, int]] = {}
        self._dirty: set[MetricMeta] = set()
        self._view: Snapshot = {}
        self._view_generation = -1

    # ---------------------------------------------------------------- updates

    def report(self, pid: int, slot: int | None, snapshot: Snapshot, slot_attribute: str = SLOT_ATTRIBUTE) -> None:
        """Replace the worker's latest cumulative snapshot; its gauges are labelled ``slot_attribute`` = ``slot``
        (None: left out)."""
        old = self._held.get(pid)
        new = self._held[pid] = _Held(slot, snapshot, slot_attribute)
        sampled = [meta for meta, points in snapshot.items() if self._sampled(meta, points)]
        if old is None:
            self._changed(snapshot)
            return
        relabelled = (old.slot, old.slot_attribute) != (slot, slot_attribute)
        changed = [meta for meta in old.snapshot if meta not in snapshot]
        if not changed and list(old.snapshot) != list(snapshot):
            self.generation += 1  # same metrics, listed in another order: the view's order may change
        for meta, points in snapshot.items():
            before = old.snapshot.get(meta)
            if (
                before is None
                or (relabelled and meta.kind is Kind.GAUGE)
                or before != points
                or old.fingerprint(meta) != new.fingerprint(meta)
            ):
                changed.append(meta)
        self._changed(changed + sampled)

    def _sampled(self, meta: MetricMeta, points: dict[AttrKey, Value]) -> bool:
        """Keep the newest of ``points``' exemplars with those already held; True when any of them changed."""
        found = exemplars_of(points)
        if not found or not meta.kind.is_total:
            return False
        held = self._exemplars.setdefault(meta, {})
        changed = False
        for key, exemplars in found.items():
            value = points.get(key)
            bounds = value.bounds if isinstance(value, HistogramValue) else None
            before = held.get(key, ())
            after = newest_per_bucket((*before, *exemplars), bounds) if before else exemplars
            if after != before:
                held[key] = after
                changed = True
        return changed

    def drop_gauges(self, pid: int) -> None:
        """The worker is dead: its gauges and up-down counters leave the merged view, its totals stay until retired."""
        held = self._held.get(pid)
        if held is not None:
            self._changed([meta for meta in held.snapshot if not meta.kind.is_total])
            held.snapshot = {meta: points for meta, points in held.snapshot.items() if meta.kind.is_total}

    def retire(self, pid: int) -> None:
        """Fold the worker's counters and histograms into the permanent totals and forget it."""
        held = self._held.pop(pid, None)
        if held is None:
            return
        self._changed(held.snapshot)
        for meta, points in held.snapshot.items():
            if meta.kind.is_total:
                retired = self._retired.setdefault(meta, {})
                for key, value in points.items():
                    _fold(retired, key, value)

    def _changed(self, metas: Collection[MetricMeta]) -> None:
        if metas:
            self._dirty.update(metas)
            self.generation += 1

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
        """The merged view of every metric, by the merge rules (sets :attr:`conflicts` for this merge).

        A new dict each call (the caller may add to it), but the points dict of a metric whose inputs did not change
        since the previous call is the same object: callers must not modify points dicts.
        """
        if self._view_generation != self.generation:
            for meta in self._dirty:
                merged = self._merge(meta)
                if merged is None:
                    self._merged.pop(meta, None)
                else:
                    self._merged[meta] = merged
            self._dirty.clear()
            self._view = {meta: self._merged[meta][0] for meta in self._order()}
            self._view_generation = self.generation
        self.conflicts = sum(self._merged[meta][1] for meta in self._view)
        return dict(self._view)

    def _order(self) -> list[MetricMeta]:
        """Metrics in the merged view's order: retired totals, then the other totals and the gauges, each in the
        order the workers (in the order they first reported) list them."""
        totals = list(self._retired)
        gauges = []
        seen = set(totals)
        for held in self._held.values():
            for meta in held.snapshot:
                if meta in seen:
                    continue
                if meta.kind is not Kind.GAUGE:
                    totals.append(meta)
                elif held.slot is not None:
                    gauges.append(meta)
                else:
                    continue  # a gauge of a worker without a slot is left out; another worker may still have it
                seen.add(meta)
        return totals + gauges

    def _merge(self, meta: MetricMeta) -> tuple[_Merged, int] | None:
        """One metric merged from scratch, and its conflicts; None when no worker (and no retired total) has it."""
        if meta.kind is Kind.GAUGE:
            gauges: _Merged = {}
            found = False
            for held in self._held.values():
                points = held.snapshot.get(meta)
                if points is not None and held.slot is not None:
                    found = True
                    for key, value in points.items():
                        gauges[_with_slot(key, held.slot_attribute, held.slot)] = value
            return (gauges, 0) if found else None
        retired = self._retired.get(meta)
        found = retired is not None
        sums = {k: v.copy() if isinstance(v, _ExactHistogram) else v for k, v in (retired or {}).items()}
        conflicts = 0
        for held in self._held.values():
            points = held.snapshot.get(meta)
            if points is not None:
                found = True
                for key, value in points.items():
                    conflicts += _fold(sums, key, value)
        if not found:
            return None
        merged = {k: _result(v) for k, v in sums.items()}
        sampled = self._exemplars.get(meta)
        if sampled:
            merged = with_exemplars(
                merged, {key: _rebucketed(exemplars, merged.get(key)) for key, exemplars in sampled.items()}
            )
        return merged, conflicts


def _fold(target: dict[AttrKey, Exact | _ExactHistogram], key: AttrKey, value: Value) -> int:
    """Add ``value`` into ``target[key]``; 1 when it could not be (a conflict), else 0."""
    current = target.get(key)
    # Fast path for the common case, integer counters: exact already, no Fraction needed.
    if type(value) is int and (current is None or type(current) is int):
        target[key] = value if current is None else current + value
        return 0
    if isinstance(value, HistogramValue):
        if current is None:
            target[key] = _ExactHistogram.of(value)
        elif not (isinstance(current, _ExactHistogram) and current.add(value)):
            return 1
    elif isinstance(current, _ExactHistogram):
        return 1
    else:
        target[key] = _exact(value) if current is None else _exact_add(current, value)
    return 0


def _rebucketed(exemplars: tuple[Exemplar, ...], value: Value | None) -> tuple[Exemplar, ...]:
    """The newest of ``exemplars`` per bucket of the merged ``value`` (a worker whose bucket boundaries conflicted
    with the others' may have sampled them into other buckets)."""
    if isinstance(value, HistogramValue):
        return newest_per_bucket(exemplars, value.bounds)
    return newest_per_bucket(exemplars, None)


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
