"""Unit tests for the arbiter's merge store (otel_gunicorn._arbiter.merge)."""

from __future__ import annotations

import sys
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._instruments import SLOT_ATTRIBUTE
from otel_gunicorn._snapshot import AttrKey, HistogramValue, Kind, MetricMeta, Snapshot, Value, fingerprint

COUNTER = MetricMeta("app", "", "", "requests", "", "{request}", Kind.COUNTER)
UPDOWN = MetricMeta("app", "", "", "active", "", "{request}", Kind.UPDOWNCOUNTER)
GAUGE = MetricMeta("app", "", "", "threads", "", "{thread}", Kind.GAUGE)
HISTOGRAM = MetricMeta("app", "", "", "duration", "", "s", Kind.HISTOGRAM)
GET = (("method", "GET"),)
BOUNDS = (1.0, 10.0)
fast = settings(max_examples=100, deadline=None)


def hist(
    counts: tuple[int, ...], total: float, low: float, high: float, bounds: tuple[float, ...] = BOUNDS
) -> HistogramValue:
    """A histogram point whose count is the sum of its bucket counts."""
    return HistogramValue(sum(counts), total, bounds, counts, low, high)


def store_with(*reports: tuple[int, int | None, Snapshot]) -> MergeStore:
    """A store where each (pid, slot, snapshot) reported."""
    store = MergeStore()
    for pid, slot, snapshot in reports:
        store.report(pid, slot, snapshot)
    return store


def value_of(store: MergeStore, meta: MetricMeta, key: tuple = ()) -> Value | None:
    """The merged value of one series, or None when absent."""
    return store.merged().get(meta, {}).get(key)


# ---------------------------------------------------------------- counters


def test_counter_is_summed_across_workers() -> None:
    """Two live workers' counters add up."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}), (2, 1, {COUNTER: {GET: 4}}))

    assert {COUNTER: {GET: 7}} == store.merged()


def test_counter_uses_the_latest_cumulative_report() -> None:
    """A newer report replaces the worker's older one (cumulative values are not added twice)."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.report(1, 0, {COUNTER: {GET: 5}})

    assert 5 == value_of(store, COUNTER, GET)


def test_same_report_applied_twice_counts_once() -> None:
    """A duplicated report does not double the total."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.report(1, 0, {COUNTER: {GET: 3}})

    assert 3 == value_of(store, COUNTER, GET)


def test_counter_series_are_kept_apart_by_attributes() -> None:
    """Different attribute sets are different series."""
    post = (("method", "POST"),)
    store = store_with((1, 0, {COUNTER: {GET: 1, post: 2}}), (2, 1, {COUNTER: {GET: 10}}))

    assert {COUNTER: {GET: 11, post: 2}} == store.merged()


def test_float_counters_are_summed_exactly() -> None:
    """0.1 + 0.2 over two workers is the correctly rounded sum, not float addition's 0.30000000000000004."""
    store = store_with((1, 0, {COUNTER: {(): 0.1}}), (2, 1, {COUNTER: {(): 0.2}}))

    assert float(Fraction(0.1) + Fraction(0.2)) == value_of(store, COUNTER)


def test_retired_counter_stays_in_the_sum() -> None:
    """A retired worker's total stays in the sum and the store forgets the worker."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}), (2, 1, {COUNTER: {GET: 4}}))
    store.retire(1)

    assert (7, [2]) == (value_of(store, COUNTER, GET), store.worker_pids)


def test_replacement_worker_adds_to_the_retired_total() -> None:
    """A replacement in the same slot starts from zero and its counts add to its predecessor's."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.retire(1)
    store.report(2, 0, {COUNTER: {GET: 1}})

    assert 4 == value_of(store, COUNTER, GET)


def test_dead_workers_last_report_replaces_its_earlier_one() -> None:
    """The last report still in the socket when the worker died is the one retired."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.drop_gauges(1)
    store.report(1, 0, {COUNTER: {GET: 5}})
    store.drop_gauges(1)
    store.retire(1)

    assert 5 == value_of(store, COUNTER, GET)


def test_dropping_gauges_keeps_the_totals_held() -> None:
    """A dead worker not yet retired still holds its counter."""
    store = store_with((1, 0, {COUNTER: {GET: 3}, GAUGE: {(): 1}}))
    store.drop_gauges(1)

    assert ({COUNTER: {GET: 3}}, [1]) == (store.merged(), store.worker_pids)


def test_reused_pid_after_retiring_starts_fresh() -> None:
    """A new process reporting under a retired worker's pid adds to the retired total."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.retire(1)
    store.report(1, 0, {COUNTER: {GET: 1}})

    assert 4 == value_of(store, COUNTER, GET)


def test_unknown_pids_are_ignored() -> None:
    """drop_gauges and retire of a pid never seen change nothing."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.drop_gauges(99)
    store.retire(99)

    assert ({COUNTER: {GET: 3}}, [1]) == (store.merged(), store.worker_pids)


def test_explicit_retire_keeps_the_counter() -> None:
    """retire() folds a worker's counters into the permanent totals."""
    store = store_with((1, 0, {COUNTER: {GET: 3}}))
    store.retire(1)

    assert ({COUNTER: {GET: 3}}, []) == (store.merged(), store.worker_pids)


# ---------------------------------------------------------------- up-down counters


def test_updowncounter_is_summed_over_live_workers() -> None:
    """Live workers' up-down counters add up."""
    store = store_with((1, 0, {UPDOWN: {(): 2}}), (2, 1, {UPDOWN: {(): -1}}))

    assert {UPDOWN: {(): 1}} == store.merged()


def test_updowncounter_excludes_a_dead_worker_at_once() -> None:
    """A worker's up-down counter leaves the sum when its gauges are dropped, before it is retired."""
    store = store_with((1, 0, {UPDOWN: {(): 2}}), (2, 1, {UPDOWN: {(): 5}}))
    store.drop_gauges(1)

    assert 5 == value_of(store, UPDOWN)


def test_updowncounter_is_not_retired() -> None:
    """A retired worker's up-down counter is gone for good."""
    store = store_with((1, 0, {UPDOWN: {(): 2}}))
    store.retire(1)

    assert {} == store.merged()


# ---------------------------------------------------------------- gauges


def test_gauge_gets_one_series_per_live_worker_slot() -> None:
    """Each live worker's gauge point gets its gunicorn.worker.slot attribute."""
    store = store_with((11, 0, {GAUGE: {GET: 1.5}}), (12, 1, {GAUGE: {GET: 2.5}}))

    expected = {
        GAUGE: {
            ((SLOT_ATTRIBUTE, 0), ("method", "GET")): 1.5,
            ((SLOT_ATTRIBUTE, 1), ("method", "GET")): 2.5,
        }
    }

    assert expected == store.merged()


def test_gauge_disappears_when_dropped() -> None:
    """A dead worker's gauge series vanish when dropped, before it is retired."""
    store = store_with((11, 0, {GAUGE: {(): 1}}), (12, 1, {GAUGE: {(): 2}}))
    store.drop_gauges(11)

    assert {GAUGE: {((SLOT_ATTRIBUTE, 1),): 2}} == store.merged()


def test_gauge_of_the_last_worker_leaves_no_metric() -> None:
    """With no live worker left, the gauge metric is absent, not empty."""
    store = store_with((11, 0, {GAUGE: {(): 1}}))
    store.drop_gauges(11)

    assert {} == store.merged()


def test_gauge_without_a_slot_is_left_out() -> None:
    """A worker whose slot is unknown contributes no gauge series (it could not be labelled)."""
    store = store_with((11, None, {GAUGE: {(): 1}}))

    assert {} == store.merged()


def test_latest_report_gives_the_slot() -> None:
    """The slot given with the latest report is the one the gauge is labelled with."""
    store = store_with((11, None, {}))
    store.report(11, 3, {GAUGE: {(): 1}})

    assert {GAUGE: {((SLOT_ATTRIBUTE, 3),): 1}} == store.merged()


def test_replacement_worker_reuses_the_slot_label() -> None:
    """A replacement worker in the same slot produces the same series key, keeping label cardinality bounded."""
    store = store_with((11, 0, {GAUGE: {(): 1}}))
    store.retire(11)
    store.report(12, 0, {GAUGE: {(): 7}})

    assert {GAUGE: {((SLOT_ATTRIBUTE, 0),): 7}} == store.merged()


# ---------------------------------------------------------------- histograms


def test_histogram_buckets_count_and_sum_are_added() -> None:
    """Two workers' histograms with equal bounds add bucket by bucket; min and max are the extremes."""
    store = store_with(
        (1, 0, {HISTOGRAM: {(): hist((1, 2, 0), 8.0, 0.5, 5.0)}}),
        (2, 1, {HISTOGRAM: {(): hist((0, 1, 3), 70.0, 2.0, 30.0)}}),
    )

    assert {HISTOGRAM: {(): hist((1, 3, 3), 78.0, 0.5, 30.0)}} == store.merged()


def test_dead_workers_histogram_is_kept() -> None:
    """A retired worker's histogram stays in the merged histogram."""
    store = store_with(
        (1, 0, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}),
        (2, 1, {HISTOGRAM: {(): hist((0, 1, 0), 2.0, 2.0, 2.0)}}),
    )
    store.retire(1)

    assert {HISTOGRAM: {(): hist((1, 1, 0), 2.5, 0.5, 2.0)}} == store.merged()


def test_merged_does_not_mutate_retired_histograms() -> None:
    """Calling merged() twice gives the same histogram (the retired totals are copied, not added into)."""
    store = store_with(
        (1, 0, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}),
        (2, 1, {HISTOGRAM: {(): hist((0, 1, 0), 2.0, 2.0, 2.0)}}),
    )
    store.retire(1)
    first = store.merged()

    assert first == store.merged()


def test_mismatched_histogram_bounds_are_counted_as_conflicts() -> None:
    """A histogram with other bounds than the first one seen is dropped and counted in .conflicts."""
    store = store_with(
        (1, 0, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}),
        (2, 1, {HISTOGRAM: {(): hist((0, 1), 7.0, 7.0, 7.0, bounds=(5.0,))}}),
    )

    merged = store.merged()

    assert ({HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}, 1) == (merged, store.conflicts)


def test_mismatched_bounds_against_a_retired_histogram_are_counted() -> None:
    """A live histogram whose bounds differ from a retired one's is a conflict too."""
    store = store_with((1, 0, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}))
    store.retire(1)
    store.report(2, 0, {HISTOGRAM: {(): hist((0, 1), 7.0, 7.0, 7.0, bounds=(5.0,))}})

    merged = store.merged()

    assert ({HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}, 1) == (merged, store.conflicts)


def test_no_conflicts_when_bounds_agree() -> None:
    """Equal bounds never count a conflict."""
    store = store_with(
        (1, 0, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}),
        (2, 1, {HISTOGRAM: {(): hist((1, 0, 0), 0.5, 0.5, 0.5)}}),
    )
    store.merged()

    assert 0 == store.conflicts


# ---------------------------------------------------------------- retiring


def test_retiring_keeps_the_counter_and_drops_the_gauge() -> None:
    """Retiring a worker that still holds gauges keeps its counter and drops its gauge."""
    store = store_with((1, 0, {COUNTER: {(): 3}, GAUGE: {(): 1}}))
    store.retire(1)

    assert ({COUNTER: {(): 3}}, []) == (store.merged(), store.worker_pids)


# ---------------------------------------------------------------- infinities and overflow


def test_counter_sum_beyond_float_range_is_infinity() -> None:
    """Two workers near the float maximum merge to inf instead of raising OverflowError."""
    store = store_with((1, 0, {COUNTER: {(): sys.float_info.max}}), (2, 1, {COUNTER: {(): sys.float_info.max}}))

    assert float("inf") == value_of(store, COUNTER)


def test_negative_sum_beyond_float_range_is_minus_infinity() -> None:
    """Up-down counters near the negative float limit merge to -inf instead of raising OverflowError."""
    store = store_with((1, 0, {UPDOWN: {(): -sys.float_info.max}}), (2, 1, {UPDOWN: {(): -sys.float_info.max}}))

    assert float("-inf") == value_of(store, UPDOWN)


def test_infinity_added_to_an_out_of_range_sum_is_infinity() -> None:
    """An inf report on top of an exact sum already beyond float range is inf, not OverflowError."""
    store = store_with(
        (1, 0, {COUNTER: {(): sys.float_info.max}}),
        (2, 1, {COUNTER: {(): sys.float_info.max}}),
        (3, 2, {COUNTER: {(): float("inf")}}),
    )

    assert float("inf") == value_of(store, COUNTER)


def test_infinite_counter_value_merges_to_infinity() -> None:
    """An infinite report makes the sum infinite rather than failing."""
    store = store_with((1, 0, {COUNTER: {(): float("inf")}}), (2, 1, {COUNTER: {(): 1}}))

    assert float("inf") == value_of(store, COUNTER)


# ---------------------------------------------------------------- properties

numbers = st.integers(min_value=-(10**12), max_value=10**12) | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def worker_reports(draw: st.DrawFn) -> list[tuple[int, int, Snapshot]]:
    """Reports of several workers (pid, slot, snapshot): each worker reports one or more cumulative snapshots."""
    reports = []
    for index in range(draw(st.integers(min_value=1, max_value=4))):
        pid = 1000 + index
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            counts = tuple(draw(st.lists(st.integers(min_value=0, max_value=50), min_size=3, max_size=3)))
            low, high = sorted(draw(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2)))
            snapshot: Snapshot = {
                COUNTER: {GET: draw(numbers), (): draw(numbers)},
                UPDOWN: {(): draw(numbers)},
                GAUGE: {(): draw(numbers)},
                HISTOGRAM: {(): hist(counts, draw(st.floats(-1e12, 1e12)), low, high)},
            }
            reports.append((pid, index, snapshot))
    return reports


def apply(reports: list[tuple[int, int, Snapshot]], retired: list[int]) -> MergeStore:
    """Report in the given order, then drop the gauges of and retire the ``retired`` pids in that order."""
    store = MergeStore()
    for pid, slot, snapshot in reports:
        store.report(pid, slot, snapshot)
    for pid in retired:
        store.drop_gauges(pid)
        store.retire(pid)
    return store


@fast
@given(reports=worker_reports(), data=st.data())
def test_merged_result_is_independent_of_arrival_order(
    reports: list[tuple[int, int, Snapshot]], data: st.DataObject
) -> None:
    """Interleaving workers' reports (each worker's own in order) and retiring in any order gives one result."""
    pids = sorted({pid for pid, _, _ in reports})
    retired = data.draw(st.lists(st.sampled_from(pids), unique=True))
    order = data.draw(st.permutations(range(len(reports))))
    # keep each worker's own reports in their original order: stable-sort the shuffled positions per pid
    by_pid: dict[int, list[tuple[int, int, Snapshot]]] = {}
    for report in reports:
        by_pid.setdefault(report[0], []).append(report)
    shuffled = [by_pid[reports[i][0]].pop(0) for i in order]

    expected = apply(reports, sorted(retired)).merged()
    actual = apply(shuffled, data.draw(st.permutations(retired))).merged()

    assert expected == actual


@st.composite
def event_sequences(draw: st.DrawFn) -> list[tuple[str, int, int | float]]:
    """A random sequence of (event, which worker, increment); which worker is taken modulo the eligible ones."""
    increment = st.integers(min_value=0, max_value=10**6) | st.floats(min_value=0, max_value=1e6)
    event = st.tuples(
        st.sampled_from(["new", "report", "report", "report", "drop", "retire"]),
        st.integers(min_value=0, max_value=50),
        increment,
    )
    return draw(st.lists(event, max_size=40))


@fast
@given(events=event_sequences())
def test_counter_never_decreases_and_ends_at_the_sum_of_last_reports(
    events: list[tuple[str, int, int | float]],
) -> None:
    """Whatever the order of reports, drops and retirements, a counter's merged value never drops and ends as every
    worker's last value summed."""
    store = MergeStore()
    last: dict[int, int | float] = {}  # pid -> last reported cumulative value (pids are never reused here)
    held: set[int] = set()  # not retired yet: may still report (a dead worker's last report may still arrive)
    observed: list[int | float] = []

    def pick(which: int) -> int | None:
        return sorted(held)[which % len(held)] if held else None

    for kind, which, increment in events:
        if kind == "new":
            new = len(last) + 1
            last[new] = 0
            held.add(new)
        elif (pid := pick(which)) is None:
            pass
        elif kind == "report":
            last[pid] += increment  # cumulative: never smaller than the previous report
            store.report(pid, pid % 4, {COUNTER: {(): last[pid]}})
        elif kind == "drop":
            store.drop_gauges(pid)
        else:
            held.discard(pid)
            store.retire(pid)
        total = store.merged().get(COUNTER, {}).get((), 0)
        assert not isinstance(total, HistogramValue)  # a counter's point is a number
        observed.append(total)

    expected = float(sum(Fraction(v) for v in last.values()))
    final = store.merged().get(COUNTER, {}).get((), 0)

    assert (sorted(observed), expected) == (observed, final)


# ---------------------------------------------------------------- incremental merging (what the scrape cache relies on)


def test_unchanged_report_keeps_the_generation_and_the_points() -> None:
    """A worker re-sending an equal snapshot changes nothing: same generation, the very same points dicts."""
    store = store_with((1, 0, {COUNTER: {GET: 3}, GAUGE: {(): 1}}))
    first = store.merged()
    generation = store.generation

    store.report(1, 0, {COUNTER: {GET: 3}, GAUGE: {(): 1}})
    second = store.merged()

    assert (generation, True, True) == (store.generation, first[COUNTER] is second[COUNTER], first == second)


def test_a_changed_metric_is_merged_again_and_the_others_kept() -> None:
    """A report changing one metric gives that metric new points; the other metric's points are the same object."""
    store = store_with((1, 0, {COUNTER: {GET: 3}, UPDOWN: {(): 1}}), (2, 1, {COUNTER: {GET: 4}}))
    first = store.merged()

    store.report(2, 1, {COUNTER: {GET: 5}})
    second = store.merged()

    assert ({COUNTER: {GET: 8}, UPDOWN: {(): 1}}, True) == (second, first[UPDOWN] is second[UPDOWN])


def test_equal_points_of_another_type_are_a_change() -> None:
    """1 and True are == but not the same label value (rendered 1 and true): the merged view takes the new one."""
    store = store_with((1, 0, {GAUGE: {(("flag", 1),): 0.0}}))
    store.merged()

    store.report(1, 0, {GAUGE: {(("flag", True),): -0.0}})
    ((key, value),) = store.merged()[GAUGE].items()

    assert ("True", "-0.0") == (repr(key[0][1]), repr(value))


def test_every_change_advances_the_generation() -> None:
    """A changed report, dropping gauges and retiring each advance the generation."""
    store = store_with((1, 0, {COUNTER: {GET: 3}, GAUGE: {(): 1}}))
    generations = [store.generation]
    for update in (
        lambda: store.report(1, 0, {COUNTER: {GET: 4}, GAUGE: {(): 1}}),
        lambda: store.drop_gauges(1),
        lambda: store.retire(1),
    ):
        update()
        generations.append(store.generation)

    assert generations == sorted(set(generations))


def test_a_new_slot_relabels_the_gauges() -> None:
    """The same gauge reported under another slot is merged again with the new slot."""
    store = store_with((1, 0, {GAUGE: {(): 1}}))
    store.merged()
    store.report(1, 2, {GAUGE: {(): 1}})

    assert {GAUGE: {((SLOT_ATTRIBUTE, 2),): 1}} == store.merged()


exact_values = st.sampled_from((0, 1, 2, 1.0, 0.0, -0.0, True, 2.5))


@st.composite
def exact_snapshots(draw: st.DrawFn) -> Snapshot:
    """Snapshots whose points may be equal by ``==`` but differ in type or order."""
    snapshot: Snapshot = {}
    for meta in draw(st.permutations([COUNTER, UPDOWN, GAUGE, HISTOGRAM]))[: draw(st.integers(0, 4))]:
        keys: list[AttrKey] = draw(
            st.lists(st.sampled_from([GET, (("method", 1),), (("method", True),), ()]), max_size=3)
        )
        if meta.kind is Kind.HISTOGRAM:
            snapshot[meta] = {key: hist((1, 0, 0), draw(exact_values), 0.5, 0.5) for key in keys}
        else:
            snapshot[meta] = {key: draw(exact_values) for key in keys}
    return snapshot


@fast
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(("report", "report", "drop_gauges", "retire")), st.integers(1, 3), exact_snapshots()),
        max_size=20,
    ),
    slots=st.lists(st.integers(0, 2), min_size=20, max_size=20),
)
def test_incremental_merge_is_exactly_a_fresh_merge(steps: list[tuple[str, int, Snapshot]], slots: list[int]) -> None:
    """merged() after every update gives exactly (order of metrics and points, types, values, conflicts) what one
    merged() after all of them gives."""
    incremental, at_the_end = MergeStore(), MergeStore()
    for index, (operation, pid, snapshot) in enumerate(steps):
        for store in (incremental, at_the_end):
            if operation == "report":
                store.report(pid, slots[index], snapshot)
            else:
                getattr(store, operation)(pid)
        incremental.merged()

    expected, actual = at_the_end.merged(), incremental.merged()

    def exact(merged: Snapshot) -> list[tuple[MetricMeta, bytes]]:
        return [(meta, fingerprint(points)) for meta, points in merged.items()]

    assert (exact(expected), at_the_end.conflicts) == (exact(actual), incremental.conflicts)
