"""Delta temporality for the OTLP push, computed from cumulative snapshots."""

from __future__ import annotations

from otel_gunicorn._exporter.temporality import delta, wants_delta
from otel_gunicorn._snapshot import HistogramValue, Kind, MetricMeta


def meta(kind: Kind) -> MetricMeta:
    return MetricMeta("s", "", "", f"m.{kind.value}", "", "", kind)


def test_counter_delta_is_the_change_since_the_last_export():
    """A counter at 7 after 5 is sent as 2."""
    key = (("a", "b"),)
    assert {meta(Kind.COUNTER): {key: 2}} == delta({meta(Kind.COUNTER): {key: 7}}, {meta(Kind.COUNTER): {key: 5}})


def test_new_and_reset_points_are_taken_whole():
    """A point not exported before, or smaller than before (arbiter restart), is all new."""
    current = {meta(Kind.COUNTER): {(("a", "new"),): 3, (("a", "reset"),): 1}}
    previous = {meta(Kind.COUNTER): {(("a", "reset"),): 10}}
    assert {meta(Kind.COUNTER): {(("a", "new"),): 3, (("a", "reset"),): 1}} == delta(current, previous)


def test_histogram_delta_subtracts_buckets_count_and_sum():
    """Buckets, count and sum become differences; min and max stay the cumulative bounds."""
    before = HistogramValue(2, 1.0, (1.0,), (1, 1), 0.1, 2.0)
    now = HistogramValue(5, 4.0, (1.0,), (2, 3), 0.1, 3.0)
    result = delta({meta(Kind.HISTOGRAM): {(): now}}, {meta(Kind.HISTOGRAM): {(): before}})
    assert HistogramValue(3, 3.0, (1.0,), (1, 2), 0.1, 3.0) == result[meta(Kind.HISTOGRAM)][()]


def test_updowncounters_and_gauges_stay_as_they_are():
    """Only running totals become deltas; up-down counters and gauges keep their current value."""
    current = {meta(Kind.UPDOWNCOUNTER): {(): 4}, meta(Kind.GAUGE): {(): 9}}
    previous = {meta(Kind.UPDOWNCOUNTER): {(): 1}, meta(Kind.GAUGE): {(): 2}}
    assert current == delta(current, previous)


def test_preference_variable():
    """delta and lowmemory ask for deltas; cumulative, unset or anything else do not."""
    key = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
    assert [True, True, False, False] == [
        wants_delta({key: "delta"}),
        wants_delta({key: "LowMemory"}),
        wants_delta({key: "cumulative"}),
        wants_delta({}),
    ]
