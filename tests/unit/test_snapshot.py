"""Unit tests for snapshot payloads (otel_gunicorn._snapshot): SDK data -> JSON -> validated snapshot -> SDK data."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.resources import Resource

from otel_gunicorn._snapshot import (
    HistogramValue,
    Kind,
    MetricMeta,
    Snapshot,
    attr_key,
    metrics_data_from_snapshot,
    payload_from_metrics_data,
    snapshot_from_payload,
)
from otel_gunicorn._wire import ProtocolError

SCOPE = ("tests.snapshot", "1.0", "https://opentelemetry.io/schemas/1.26.0")
DEFAULT_BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0)
RESOURCE = Resource.create({"service.name": "tests"})


class Sdk(NamedTuple):
    meter: Meter
    reader: InMemoryMetricReader


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    """A meter and the in-memory reader of an explicit (never the global) MeterProvider."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Sdk(provider.get_meter(*SCOPE), reader)
    provider.shutdown()


def meta(name: str, kind: Kind, *, unit: str = "", description: str = "") -> MetricMeta:
    """A MetricMeta in the test scope."""
    return MetricMeta(*SCOPE, name, description, unit, kind)


def collected(reader: InMemoryMetricReader) -> MetricsData:
    """What the reader collects now (the SDK returns None only for a reader no MeterProvider has registered)."""
    data = reader.get_metrics_data()
    assert data is not None
    return data


def through_json(reader: InMemoryMetricReader) -> Snapshot:
    """Collect, encode as a worker does, send through JSON, validate as the arbiter does."""
    payload = payload_from_metrics_data(collected(reader))
    return snapshot_from_payload(json.loads(json.dumps(payload)))


# ---------------------------------------------------------------- real SDK data through the payload


def test_counter_round_trip(sdk: Sdk) -> None:
    """A counter's cumulative total per attribute set survives the trip, with its name, unit and description."""
    counter = sdk.meter.create_counter("requests", unit="{request}", description="Requests served.")
    counter.add(3, {"method": "GET"})
    counter.add(2, {"method": "GET"})
    counter.add(1, {"method": "POST"})

    expected = {
        meta("requests", Kind.COUNTER, unit="{request}", description="Requests served."): {
            (("method", "GET"),): 5,
            (("method", "POST"),): 1,
        }
    }

    assert expected == through_json(sdk.reader)


def test_updowncounter_round_trip(sdk: Sdk) -> None:
    """An up-down counter becomes kind updowncounter with its net value."""
    active = sdk.meter.create_up_down_counter("active")
    active.add(5)
    active.add(-3)

    assert {meta("active", Kind.UPDOWNCOUNTER): {(): 2}} == through_json(sdk.reader)


def test_observable_gauge_round_trip(sdk: Sdk) -> None:
    """An observable gauge's observations arrive with their attributes."""

    def observe(_options: CallbackOptions) -> list[Observation]:
        return [Observation(4.5, {"state": "busy"}), Observation(1.5, {"state": "idle"})]

    sdk.meter.create_observable_gauge("threads", callbacks=[observe], unit="{thread}")

    expected = {meta("threads", Kind.GAUGE, unit="{thread}"): {(("state", "busy"),): 4.5, (("state", "idle"),): 1.5}}

    assert expected == through_json(sdk.reader)


def test_observable_counter_and_updowncounter_kinds(sdk: Sdk) -> None:
    """Observable counters merge as counters and observable up-down counters as up-down counters."""
    sdk.meter.create_observable_counter("oc", callbacks=[lambda _o: [Observation(7)]])
    sdk.meter.create_observable_up_down_counter("oudc", callbacks=[lambda _o: [Observation(-2)]])

    expected = {meta("oc", Kind.COUNTER): {(): 7}, meta("oudc", Kind.UPDOWNCOUNTER): {(): -2}}

    assert expected == through_json(sdk.reader)


def test_histogram_round_trip(sdk: Sdk) -> None:
    """A histogram keeps count, sum, default bounds, bucket counts, min and max."""
    duration = sdk.meter.create_histogram("duration", unit="s")
    for value in (0.5, 7, 7, 20000):
        duration.record(value, {"route": "/"})

    counts = (0, 1, 2) + (0,) * 12 + (1,)
    expected = {
        meta("duration", Kind.HISTOGRAM, unit="s"): {
            (("route", "/"),): HistogramValue(4, 20014.5, DEFAULT_BOUNDS, counts, 0.5, 20000.0)
        }
    }

    assert expected == through_json(sdk.reader)


def test_histogram_with_explicit_advisory_bounds(sdk: Sdk) -> None:
    """Advisory bucket boundaries given at creation are what travel."""
    size = sdk.meter.create_histogram("size", explicit_bucket_boundaries_advisory=[10, 100])
    size.record(50)
    size.record(500)

    expected = {meta("size", Kind.HISTOGRAM): {(): HistogramValue(2, 550, (10.0, 100.0), (0, 1, 1), 50.0, 500.0)}}

    assert expected == through_json(sdk.reader)


def test_sequence_attributes_become_tuples(sdk: Sdk) -> None:
    """A list-valued attribute is a tuple in the snapshot's hashable key."""
    sdk.meter.create_counter("c").add(1, {"tags": ["a", "b"], "flag": True})

    assert {meta("c", Kind.COUNTER): {(("flag", True), ("tags", ("a", "b"))): 1}} == through_json(sdk.reader)


def test_scopes_are_kept_apart() -> None:
    """Two meters' instruments of the same name are two metrics, told apart by scope."""
    other = MeterProvider(metric_readers=[reader := InMemoryMetricReader()], shutdown_on_exit=False)
    try:
        other.get_meter("a").create_counter("same").add(1)
        other.get_meter("b", "2").create_counter("same").add(2)
        actual = through_json(reader)
    finally:
        other.shutdown()

    expected = {
        MetricMeta("a", "", "", "same", "", "", Kind.COUNTER): {(): 1},
        MetricMeta("b", "2", "", "same", "", "", Kind.COUNTER): {(): 2},
    }

    assert expected == actual


def test_empty_collection_is_an_empty_payload() -> None:
    """MetricsData without resource metrics is an empty metrics list."""
    assert {"metrics": []} == payload_from_metrics_data(MetricsData(resource_metrics=[]))


def test_attr_key_is_order_independent() -> None:
    """Attribute order does not change the key."""
    assert attr_key({"b": 2, "a": 1}) == attr_key({"a": 1, "b": 2})


def test_attr_key_of_no_attributes() -> None:
    """None and {} both give the empty key."""
    assert ((), ()) == (attr_key(None), attr_key({}))


# ---------------------------------------------------------------- malformed payloads


def good_payload() -> dict[str, Any]:
    """A valid payload with one metric of each kind."""
    scope = list(SCOPE)
    return {
        "metrics": [
            {
                "scope": scope,
                "name": "c",
                "description": "",
                "unit": "",
                "kind": "counter",
                "points": [{"a": {"k": "v"}, "v": 1}],
            },
            {
                "scope": scope,
                "name": "u",
                "description": "",
                "unit": "",
                "kind": "updowncounter",
                "points": [{"a": {}, "v": -1}],
            },
            {
                "scope": scope,
                "name": "g",
                "description": "",
                "unit": "",
                "kind": "gauge",
                "points": [{"a": {}, "v": 0.5}],
            },
            {
                "scope": scope,
                "name": "h",
                "description": "",
                "unit": "s",
                "kind": "histogram",
                "points": [{"a": {}, "n": 3, "s": 2.5, "b": [1.0, 2.0], "c": [1, 1, 1], "lo": 0.1, "hi": 2.4}],
            },
        ]
    }


def test_good_payload_is_accepted() -> None:
    """The reference payload used by the malformed-payload tests is itself valid."""
    expected = {
        meta("c", Kind.COUNTER): {(("k", "v"),): 1},
        meta("u", Kind.UPDOWNCOUNTER): {(): -1},
        meta("g", Kind.GAUGE): {(): 0.5},
        meta("h", Kind.HISTOGRAM, unit="s"): {(): HistogramValue(3, 2.5, (1.0, 2.0), (1, 1, 1), 0.1, 2.4)},
    }

    assert expected == snapshot_from_payload(good_payload())


def test_missing_attributes_mean_none() -> None:
    """A point without "a" has the empty attribute key."""
    payload = good_payload()
    del payload["metrics"][0]["points"][0]["a"]

    assert {(): 1} == snapshot_from_payload(payload)[meta("c", Kind.COUNTER)]


def test_histogram_with_infinite_min_max_is_accepted() -> None:
    """The SDK's inf/-inf min and max (no min/max recorded) pass through JSON's Infinity."""
    payload = good_payload()
    payload["metrics"][3]["points"][0].update(lo=math.inf, hi=-math.inf)

    actual = snapshot_from_payload(json.loads(json.dumps(payload)))[meta("h", Kind.HISTOGRAM, unit="s")][()]

    assert isinstance(actual, HistogramValue)
    assert (math.inf, -math.inf) == (actual.min, actual.max)


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    payload = good_payload()
    target: Any = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return payload


def _delete(path: tuple[Any, ...]) -> dict[str, Any]:
    payload = good_payload()
    target: Any = payload
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return payload


C = ("metrics", 0)
CP = (*C, "points", 0)
HP = ("metrics", 3, "points", 0)

MALFORMED: dict[str, object] = {
    "not-an-object": [1, 2],
    "null": None,
    "no-metrics": {},
    "metrics-not-list": {"metrics": {}},
    "metric-not-object": {"metrics": ["c"]},
    "scope-not-list": _set((*C, "scope"), "tests"),
    "scope-too-short": _set((*C, "scope"), ["a", "b"]),
    "scope-part-not-str": _set((*C, "scope"), ["a", 1, ""]),
    "name-missing": _delete((*C, "name")),
    "name-empty": _set((*C, "name"), ""),
    "name-not-str": _set((*C, "name"), 5),
    "description-null": _set((*C, "description"), None),
    "unit-not-str": _set((*C, "unit"), ["s"]),
    "kind-unknown": _set((*C, "kind"), "summary"),
    "kind-uppercase": _set((*C, "kind"), "COUNTER"),
    "kind-int": _set((*C, "kind"), 1),
    "points-not-list": _set((*C, "points"), {"a": {}, "v": 1}),
    "point-not-object": _set((*C, "points"), [1]),
    "value-missing": _delete((*CP, "v")),
    "value-str": _set((*CP, "v"), "1"),
    "value-null": _set((*CP, "v"), None),
    "value-bool": _set((*CP, "v"), True),
    "attributes-list": _set((*CP, "a"), [["k", "v"]]),
    "attribute-nested-object": _set((*CP, "a"), {"k": {"nested": 1}}),
    "attribute-nested-list": _set((*CP, "a"), {"k": [[1]]}),
    "attribute-object-in-list": _set((*CP, "a"), {"k": [{"x": 1}]}),
    "attribute-null": _set((*CP, "a"), {"k": None}),
    "histogram-count-bool": _set((*HP, "n"), True),
    "histogram-count-float": _set((*HP, "n"), 3.0),
    "histogram-count-negative": _set((*HP, "n"), -3),
    "histogram-count-not-sum-of-buckets": _set((*HP, "n"), 4),
    "histogram-bucket-negative": _set((*HP, "c"), [2, -1, 2]),
    "histogram-bucket-bool": _set((*HP, "c"), [True, 1, 1]),
    "histogram-bucket-float": _set((*HP, "c"), [1.0, 1, 1]),
    "histogram-too-few-buckets": _set((*HP, "c"), [1, 2]),
    "histogram-too-many-buckets": _set((*HP, "c"), [1, 1, 1, 0]),
    "histogram-bounds-unsorted": _set((*HP, "b"), [2.0, 1.0]),
    "histogram-bounds-duplicate": _set((*HP, "b"), [1.0, 1.0]),
    "histogram-bound-infinite": _set((*HP, "b"), [1.0, math.inf]),
    "histogram-bound-nan": _set((*HP, "b"), [math.nan, 1.0]),
    "histogram-bound-bool": _set((*HP, "b"), [False, 1.0]),
    "histogram-bound-str": _set((*HP, "b"), ["1", 2.0]),
    "histogram-bounds-not-list": _set((*HP, "b"), 1.0),
    "histogram-buckets-not-list": _set((*HP, "c"), 3),
    "histogram-sum-missing": _delete((*HP, "s")),
    "histogram-sum-bool": _set((*HP, "s"), False),
    "histogram-min-str": _set((*HP, "lo"), "0"),
    "histogram-max-missing": _delete((*HP, "hi")),
    "histogram-point-is-number": _set(("metrics", 3, "points"), [{"a": {}, "v": 3}]),
}


@pytest.mark.parametrize("payload", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_payload_raises_protocol_error(payload: Any) -> None:
    """Every malformed payload is a ProtocolError (never a TypeError, KeyError or a half-built snapshot)."""
    with pytest.raises(ProtocolError) as info:
        snapshot_from_payload(copy.deepcopy(payload))

    assert ProtocolError is type(info.value)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
        max_leaves=15,
    )
)
def test_random_json_raises_only_protocol_error(payload: Any) -> None:
    """Arbitrary JSON-shaped values either validate or raise ProtocolError, never anything else."""
    try:
        snapshot = snapshot_from_payload(payload)
    except ProtocolError:
        snapshot = {}

    assert [] == [
        meta for meta, points in snapshot.items() if not (isinstance(meta, MetricMeta) and isinstance(points, dict))
    ]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_good_payload_raises_only_protocol_error(data: st.DataObject) -> None:
    """Replacing any one field of a valid payload with a random value validates or raises ProtocolError."""
    payload = good_payload()
    metric = data.draw(st.sampled_from(payload["metrics"]))
    point = metric["points"][0]
    target = data.draw(st.sampled_from([metric, point]))
    field = data.draw(st.sampled_from(sorted(target)))
    target[field] = data.draw(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=3)
        | st.lists(st.integers(), max_size=3)
    )
    try:
        snapshot = snapshot_from_payload(payload)
    except ProtocolError:
        snapshot = {}

    assert [] == [
        meta for meta, points in snapshot.items() if not (isinstance(meta, MetricMeta) and isinstance(points, dict))
    ]


# ---------------------------------------------------------------- merged snapshot -> SDK MetricsData


def sdk_metrics(snapshot: Snapshot) -> dict[str, Any]:
    """metrics_data_from_snapshot's metrics by name (one resource, test scope)."""
    data = metrics_data_from_snapshot(snapshot, RESOURCE, start_time_ns=100, now_ns=200)
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_counter_becomes_monotonic_cumulative_sum() -> None:
    """A counter is a monotonic Sum with cumulative temporality."""
    metric = sdk_metrics({meta("c", Kind.COUNTER): {(): 3}})["c"]

    expected = (Sum, True, AggregationTemporality.CUMULATIVE)

    assert expected == (type(metric.data), metric.data.is_monotonic, metric.data.aggregation_temporality)


def test_updowncounter_becomes_non_monotonic_cumulative_sum() -> None:
    """An up-down counter is a non-monotonic Sum with cumulative temporality."""
    metric = sdk_metrics({meta("u", Kind.UPDOWNCOUNTER): {(): -3}})["u"]

    expected = (Sum, False, AggregationTemporality.CUMULATIVE)

    assert expected == (type(metric.data), metric.data.is_monotonic, metric.data.aggregation_temporality)


def test_gauge_becomes_gauge() -> None:
    """A gauge is an SDK Gauge."""
    metric = sdk_metrics({meta("g", Kind.GAUGE): {(): 1.5}})["g"]

    assert Gauge is type(metric.data)


def test_histogram_becomes_cumulative_histogram() -> None:
    """A histogram is an SDK Histogram with cumulative temporality and every field carried over."""
    value = HistogramValue(3, 2.5, (1.0, 2.0), (1, 1, 1), 0.1, 2.4)
    metric = sdk_metrics({meta("h", Kind.HISTOGRAM): {(("k", "v"),): value}})["h"]
    point = metric.data.data_points[0]

    expected = (Histogram, AggregationTemporality.CUMULATIVE, {"k": "v"}, 3, 2.5, (1.0, 2.0), (1, 1, 1), 0.1, 2.4)
    actual = (
        type(metric.data),
        metric.data.aggregation_temporality,
        dict(point.attributes),
        point.count,
        point.sum,
        tuple(point.explicit_bounds),
        tuple(point.bucket_counts),
        point.min,
        point.max,
    )

    assert expected == actual


def test_number_points_carry_attributes_value_and_times() -> None:
    """Each number point has its attributes, value, the start time and the collection time."""
    metric = sdk_metrics({meta("c", Kind.COUNTER): {(("k", "a"),): 1, (("k", "b"),): 2}})["c"]

    expected = [({"k": "a"}, 1, 100, 200), ({"k": "b"}, 2, 100, 200)]
    actual = sorted(
        ((dict(p.attributes), p.value, p.start_time_unix_nano, p.time_unix_nano) for p in metric.data.data_points),
        key=lambda point: point[1],
    )

    assert expected == actual


def test_metadata_scope_and_resource_are_carried() -> None:
    """Name, unit, description, scope and resource appear in the SDK data."""
    snapshot: Snapshot = {meta("c", Kind.COUNTER, unit="s", description="desc"): {(): 1}}
    data = metrics_data_from_snapshot(snapshot, RESOURCE, 1, 2)
    resource_metrics = data.resource_metrics[0]
    scope_metrics = resource_metrics.scope_metrics[0]
    metric = scope_metrics.metrics[0]

    expected = (RESOURCE, SCOPE, ("c", "s", "desc"))
    actual = (
        resource_metrics.resource,
        (scope_metrics.scope.name, scope_metrics.scope.version, scope_metrics.scope.schema_url),
        (metric.name, metric.unit, metric.description),
    )

    assert expected == actual


def test_metric_without_points_is_left_out() -> None:
    """A metric whose series are all gone produces no SDK metric."""
    assert {"c"} == set(sdk_metrics({meta("c", Kind.COUNTER): {(): 1}, meta("g", Kind.GAUGE): {}}))


def test_metrics_are_grouped_by_scope() -> None:
    """Metrics of two scopes go into two ScopeMetrics."""
    snapshot: Snapshot = {
        MetricMeta("a", "", "", "x", "", "", Kind.COUNTER): {(): 1},
        MetricMeta("b", "", "", "y", "", "", Kind.COUNTER): {(): 1},
        MetricMeta("a", "", "", "z", "", "", Kind.GAUGE): {(): 1},
    }
    data = metrics_data_from_snapshot(snapshot, RESOURCE, 1, 2)

    actual = {sm.scope.name: sorted(m.name for m in sm.metrics) for sm in data.resource_metrics[0].scope_metrics}

    assert {"a": ["x", "z"], "b": ["y"]} == actual


def test_sdk_data_is_accepted_by_the_otlp_encoder(sdk: Sdk) -> None:
    """What metrics_data_from_snapshot builds from real SDK data encodes as OTLP (what every exporter consumes)."""
    sdk.meter.create_counter("c").add(1, {"tags": ["a", "b"]})
    sdk.meter.create_histogram("h").record(3)
    sdk.meter.create_observable_gauge("g", callbacks=[lambda _o: [Observation(1)]])
    data = metrics_data_from_snapshot(through_json(sdk.reader), RESOURCE, 1, 2)

    request = encode_metrics(data)

    assert ["c", "g", "h"] == sorted(m.name for m in request.resource_metrics[0].scope_metrics[0].metrics)


def test_full_circle_reproduces_the_payload(sdk: Sdk) -> None:
    """SDK data -> payload -> snapshot -> SDK data -> payload gives the first payload again."""
    sdk.meter.create_counter("c", unit="1").add(2.5, {"k": ["x"]})
    sdk.meter.create_up_down_counter("u").add(-4)
    sdk.meter.create_histogram("h").record(12, {"k": 1})
    sdk.meter.create_observable_gauge("g", callbacks=[lambda _o: [Observation(9, {"b": False})]])
    first = json.loads(json.dumps(payload_from_metrics_data(collected(sdk.reader))))

    second = json.loads(
        json.dumps(payload_from_metrics_data(metrics_data_from_snapshot(snapshot_from_payload(first), RESOURCE, 1, 2)))
    )

    assert sorted(first["metrics"], key=lambda m: m["name"]) == sorted(second["metrics"], key=lambda m: m["name"])


def test_integer_beyond_float_range_is_a_protocol_error() -> None:
    """A histogram bound or extreme given as a huge JSON integer is rejected as garbage, not an OverflowError."""
    point = {"a": {}, "n": 1, "s": 1, "b": [1.0], "c": [1, 0], "lo": 10**400, "hi": 1}
    payload = {
        "metrics": [
            {"scope": ["s", "", ""], "name": "h", "description": "", "unit": "", "kind": "histogram", "points": [point]}
        ]
    }
    with pytest.raises(ProtocolError):
        snapshot_from_payload(payload)
