"""The server-wide bound on ``http.route``: the merged ``http.server.request.duration`` names at most
``OTEL_GUNICORN_MAX_ROUTES`` distinct routes, however many workers brought how many.

Runs in the arbiter, on the channel thread, under the runtime's lock, once per worker report (not per request).
Pure but for one warning.

Each worker bounds its own routes (``_worker/routes.RouteBound``: what it holds, and its span names), but workers
serving different routes could together bring more. So the arbiter admits routes in the order reports first bring
them, for its whole life, up to the bound; from then on every other route's series of a report are folded into
``http.route="_OTHER"`` before the report is stored. A route is thus folded in every report or in none, so each
worker's folded series only grow and its report stays a valid cumulative one, which the merge store retires and sums
as any other. The requests folded here are added to the report's ``otel_gunicorn.http.route.overflow`` (what the
worker folded itself, plus these), so that counter stays the number of requests recorded as ``_OTHER``.
"""

from __future__ import annotations

import logging

from otel_gunicorn import _instruments as inst
from otel_gunicorn._snapshot import (
    AttrKey,
    Exemplar,
    HistogramValue,
    Snapshot,
    Value,
    exemplars_of,
    newest_per_bucket,
    with_exemplars,
)

_log = logging.getLogger("otel_gunicorn")

_DURATION = inst.REQUEST_DURATION.meta
_OVERFLOW = inst.ROUTES_OVERFLOW.meta
_ROUTE = inst.ROUTE_ATTRIBUTE
#: series keys whose target is remembered (the merged histogram's series, as a rule, are far fewer)
_MAX_TARGETS = 100_000
#: the target of a key that stays as it is (no series key is empty: a duration has its method)
_KEPT: AttrKey = ()


class ServerRouteBound:
    """The routes admitted so far (at most ``limit``) and the folding of any other into :data:`OVERFLOW_ROUTE`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._admitted: set[str] = {inst.OVERFLOW_ROUTE}  # a worker's own _OTHER takes no place
        self._warned = False
        #: where each series key goes (its _OTHER key, or :data:`_KEPT`): a report repeats its keys, and this never
        #: changes
        self._targets: dict[AttrKey, AttrKey] = {}

    def fold(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with its request durations of routes past the bound folded into ``_OTHER`` and those requests
        added to its overflow count; ``snapshot`` itself when nothing is folded."""
        points = snapshot.get(_DURATION)
        if not points:
            return snapshot
        targets = self._targets
        folded: dict[AttrKey, AttrKey] = {}
        for key in points:
            target = targets.get(key)
            if target is None:
                target = self._target(key)
            if target is not _KEPT:
                folded[key] = target
        if not folded:
            return snapshot
        done = _folded(points, folded)
        if done is None:
            return snapshot
        durations, requests = done
        result = dict(snapshot)
        result[_DURATION] = durations
        own = snapshot.get(_OVERFLOW, {}).get((), 0)  # what the worker folded itself
        result[_OVERFLOW] = {(): (own if isinstance(own, int) else 0) + requests}
        return result

    def _target(self, key: AttrKey) -> AttrKey:
        target = _KEPT if self._admits(key) else _overflow_key(key)
        if len(self._targets) < _MAX_TARGETS:
            self._targets[key] = target
        return target

    def _admits(self, key: AttrKey) -> bool:
        for name, value in key:
            if name == _ROUTE:
                if value in self._admitted or not isinstance(value, str):
                    return True
                if len(self._admitted) <= self._limit:  # the limit, plus _OTHER
                    self._admitted.add(value)
                    return True
                self._warn(value)
                return False
        return True  # no route: a 404, or a framework we do not know

    def _warn(self, route: str) -> None:
        if not self._warned:
            self._warned = True
            _log.warning(
                "otel_gunicorn: more than %d distinct http.route values in this server (OTEL_GUNICORN_MAX_ROUTES): "
                "new ones, first %r, are recorded as http.route=%r",
                self._limit,
                route,
                inst.OVERFLOW_ROUTE,
            )


def _folded(points: dict[AttrKey, Value], folded: dict[AttrKey, AttrKey]) -> tuple[dict[AttrKey, Value], int] | None:
    """``points`` with each key of ``folded`` renamed to its ``_OTHER`` key and added there (exemplars too), and how
    many requests were renamed; None when the histograms to add disagree on their boundaries (one worker's never do:
    they share one instrument)."""
    targets = set(folded.values())
    sums: dict[AttrKey, _Sum] = {}  # the _OTHER series (the worker's own, if any, included), added up
    kept: dict[AttrKey, Value] = {}
    requests = 0
    for key, value in points.items():
        target = folded.get(key, key)
        if target not in targets:
            kept[key] = value
            continue
        if not isinstance(value, HistogramValue):
            return None
        found = sums.get(target)
        if found is None:
            sums[target] = _Sum(value)
        elif not found.add(value):
            return None
        if target is not key:
            requests += value.count
    for target, total in sums.items():
        kept[target] = total.value()
    exemplars: dict[AttrKey, tuple[Exemplar, ...]] = {}
    for key, found_exemplars in exemplars_of(points).items():
        target = folded.get(key, key)
        bounds = getattr(kept.get(target), "bounds", None)
        exemplars[target] = newest_per_bucket((*exemplars.get(target, ()), *found_exemplars), bounds)
    return with_exemplars(kept, exemplars), requests


class _Sum:
    """Histograms of one series added up, in place."""

    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(self, first: HistogramValue) -> None:
        self.bounds = first.bounds
        self.count, self.sum, self.min, self.max = first.count, first.sum, first.min, first.max
        self.counts = list(first.counts)

    def add(self, value: HistogramValue) -> bool:
        """Add ``value``; False (nothing added) when its bucket boundaries differ."""
        if value.bounds != self.bounds:
            return False
        self.count += value.count
        self.sum += value.sum
        self.counts = [a + b for a, b in zip(self.counts, value.counts)]
        self.min = min(self.min, value.min)
        self.max = max(self.max, value.max)
        return True

    def value(self) -> HistogramValue:
        return HistogramValue(self.count, self.sum, self.bounds, tuple(self.counts), self.min, self.max)


def _overflow_key(key: AttrKey) -> AttrKey:
    """``key`` with its route replaced by ``_OTHER`` (the same place in the sorted key: the name is unchanged)."""
    return tuple((name, inst.OVERFLOW_ROUTE if name == _ROUTE else value) for name, value in key)
