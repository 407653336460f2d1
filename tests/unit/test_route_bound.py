"""The server-wide bound on ``http.route``: the arbiter folds routes past OTEL_GUNICORN_MAX_ROUTES into ``_OTHER``."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._arbiter.route_bound import ServerRouteBound
from otel_gunicorn._snapshot import AttrKey, AttrValue, Exemplar, ExemplarPoints, HistogramValue, Snapshot, exemplars_of
from tests.unit.records import Records

BOUNDS = (0.5, 1.0)
DURATION = inst.REQUEST_DURATION.meta
OVERFLOW = inst.ROUTES_OVERFLOW.meta


def key(route: str | None, status: int = 200) -> AttrKey:
    attributes: dict[str, AttrValue] = {"http.request.method": "GET", "http.response.status_code": status}
    if route is not None:
        attributes["http.route"] = route
    return tuple(sorted(attributes.items()))


def histogram(count: int, fast: int | None = None) -> HistogramValue:
    """``count`` requests, ``fast`` of them (all by default) under 0.5 s, the rest between 0.5 and 1 s."""
    fast = count if fast is None else fast
    return HistogramValue(count, 0.25 * fast + 0.75 * (count - fast), BOUNDS, (fast, count - fast, 0), 0.25, 0.75)


def report(counts: dict[str | None, int], own_overflow: int = 0) -> Snapshot:
    snapshot: Snapshot = {DURATION: {key(route): histogram(n) for route, n in counts.items()}}
    if own_overflow:
        snapshot[OVERFLOW] = {(): own_overflow}
    return snapshot


def by_route(snapshot: Snapshot) -> dict[str | None, int]:
    counted: dict[str | None, int] = {}
    for attributes, value in snapshot[DURATION].items():
        route = dict(attributes).get("http.route")
        assert isinstance(route, str) or route is None
        assert isinstance(value, HistogramValue)
        counted[route] = counted.get(route, 0) + value.count
    return counted


def test_a_report_within_the_bound_is_kept_as_it_came() -> None:
    """Routes within the bound, and requests without a route: the very same report, nothing counted."""
    bound = ServerRouteBound(2)
    snapshot = report({"/a": 3, "/b": 1, None: 4})
    assert snapshot is bound.fold(snapshot)


def test_routes_from_two_workers_past_the_bound_fold_into_other() -> None:
    """Two workers, each within the bound, bring three routes: the third is folded, its requests counted."""
    bound = ServerRouteBound(2)
    first = bound.fold(report({"/a": 3, "/b": 1}))
    second = bound.fold(report({"/a": 1, "/c": 5, None: 2}, own_overflow=0))
    assert ({"/a": 3, "/b": 1}, {"/a": 1, "_OTHER": 5, None: 2}) == (by_route(first), by_route(second))
    assert {(): 5} == second[OVERFLOW]
    assert histogram(5) == second[DURATION][key("_OTHER")]


def test_a_workers_own_other_is_summed_with_what_the_arbiter_folds() -> None:
    """A worker that folded requests itself: the arbiter adds its folded requests to the same series and count."""
    bound = ServerRouteBound(1)
    bound.fold(report({"/a": 1}))
    folded = bound.fold(report({"/b": 2, "_OTHER": 3}, own_overflow=3))
    assert ({"_OTHER": 5}, {(): 5}) == (by_route(folded), folded[OVERFLOW])


def test_folded_exemplars_stay_the_newest_per_bucket() -> None:
    """Exemplars of folded series go with them: the newest per bucket of the _OTHER series."""
    bound = ServerRouteBound(1)
    bound.fold(report({"/a": 1}))
    old, new = (Exemplar(0.25, t, 1, 1, ()) for t in (100, 200))
    points = ExemplarPoints({key("/b"): histogram(1), key("/c"): histogram(1)}, {key("/b"): (old,), key("/c"): (new,)})
    folded = bound.fold({DURATION: points})
    assert {key("_OTHER"): (new,)} == dict(exemplars_of(folded[DURATION]))


def test_the_bound_is_logged_once_naming_the_variable() -> None:
    """One warning for the server, naming OTEL_GUNICORN_MAX_ROUTES and the first route folded."""
    bound = ServerRouteBound(1)
    handler = Records()
    logger = logging.getLogger("otel_gunicorn")
    logger.addHandler(handler)
    try:
        for route in ("/a", "/b", "/c", "/b"):
            bound.fold(report({route: 1}))
    finally:
        logger.removeHandler(handler)
    warnings = [message for _level, message in handler.messages if "OTEL_GUNICORN_MAX_ROUTES" in message]
    assert 1 == len(warnings)
    assert "'/b'" in warnings[0]


ROUTES = st.sampled_from(["/a", "/b", "/c", "/d", "/e", None])
#: (worker, route) requests, each followed by that worker's cumulative report
TRAFFIC = st.lists(st.tuples(st.integers(0, 2), ROUTES), max_size=40)


@given(TRAFFIC, st.integers(1, 4))
def test_the_merged_view_never_names_more_routes_than_the_bound(traffic, limit) -> None:
    """Any traffic over three workers, each reporting cumulatively: the merged view names at most ``limit`` routes
    besides _OTHER, every request is still counted once, the overflow counter is the merged _OTHER count, and each
    worker's folded report only grows."""
    bound, store = ServerRouteBound(limit), MergeStore()
    counts: dict[int, dict[str | None, int]] = {0: {}, 1: {}, 2: {}}
    previous: dict[int, dict[str | None, int]] = {}
    for worker, route in traffic:
        counts[worker][route] = counts[worker].get(route, 0) + 1
        folded = bound.fold(report(counts[worker]))
        seen = by_route(folded)
        before = previous.get(worker, {})
        assert all(seen.get(r, 0) >= n for r, n in before.items())
        previous[worker] = seen
        store.report(worker + 100, worker, folded)
    if not traffic:
        return
    merged = store.merged()
    routes = by_route(merged)
    assert len({r for r in routes if r not in (None, "_OTHER")}) <= limit
    assert len(traffic) == sum(routes.values())
    assert routes.get("_OTHER", 0) == merged.get(OVERFLOW, {}).get((), 0)
