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


class ServerRouteBound:
    """The routes admitted so far (at most ``limit``) and the folding of any other into :data:`OVERFLOW_ROUTE`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._admitted: set[str] = {inst.OVERFLOW_ROUTE}  # a worker's own _OTHER takes no place
        self._warned = False

    def fold(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with its request durations of routes past the bound folded into ``_OTHER`` and those requests
        added to its overflow count; ``snapshot`` itself when nothing is folded."""
        points = snapshot.get(_DURATION)
        if not points:
            return snapshot
        folded = [key for key in points if not self._admits(key)]
        if not folded:
            return snapshot
        kept, requests = _folded(points, set(folded))
        result = dict(snapshot)
        result[_DURATION] = kept
        own = snapshot.get(_OVERFLOW, {}).get((), 0)  # what the worker folded itself
        result[_OVERFLOW] = {(): (own if isinstance(own, int) else 0) + requests}
        return result

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


def _folded(points: dict[AttrKey, Value], folded: set[AttrKey]) -> tuple[dict[AttrKey, Value], int]:
    """``points`` with each key of ``folded`` renamed to its ``_OTHER`` key and added there (exemplars too); and how
    many requests were renamed."""
    kept: dict[AttrKey, Value] = {}
    targets: dict[AttrKey, AttrKey] = {}
    requests = 0
    for key, value in points.items():
        target = _overflow_key(key) if key in folded else key
        present = kept.get(target)
        if present is None:
            kept[target] = value
        elif _addable(present, value):
            kept[target] = _sum(present, value)  # type: ignore[arg-type]  # _addable: both histograms
        else:  # not a histogram with the other's boundaries (a worker's always are): left under its own route
            kept[key] = value
            target = key
        if target is not key and isinstance(value, HistogramValue):
            requests += value.count
        targets[key] = target
    exemplars: dict[AttrKey, tuple[Exemplar, ...]] = {}
    for key, found in exemplars_of(points).items():
        target = targets.get(key, key)
        bounds = getattr(kept.get(target), "bounds", None)
        exemplars[target] = newest_per_bucket((*exemplars.get(target, ()), *found), bounds)
    return with_exemplars(kept, exemplars), requests


def _addable(a: Value, b: Value) -> bool:
    return isinstance(a, HistogramValue) and isinstance(b, HistogramValue) and a.bounds == b.bounds


def _overflow_key(key: AttrKey) -> AttrKey:
    """``key`` with its route replaced by ``_OTHER`` (the same place in the sorted key: the name is unchanged)."""
    return tuple((name, inst.OVERFLOW_ROUTE if name == _ROUTE else value) for name, value in key)


def _sum(a: HistogramValue, b: HistogramValue) -> HistogramValue:
    return HistogramValue(
        a.count + b.count,
        a.sum + b.sum,
        a.bounds,
        tuple(x + y for x, y in zip(a.counts, b.counts)),
        min(a.min, b.min),
        max(a.max, b.max),
    )
