"""Exemplars end to end in-process: the wire, the merge store, the exposition, the OTLP data, the request capture."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.exposition_cache import ExpositionCache
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._exporter.temporality import delta, unsent_exemplars
from otel_gunicorn._operator_kit import dashboard
from otel_gunicorn._snapshot import (
    Exemplar,
    ExemplarPoints,
    HistogramValue,
    Kind,
    MetricMeta,
    Snapshot,
    attach_exemplars,
    exemplars_of,
    fingerprint,
    keep_exemplars,
    metrics_data_from_snapshot,
    newest_per_bucket,
    payload_from_metrics_data,
    payload_from_snapshot,
    snapshot_from_payload,
    with_exemplars,
)
from otel_gunicorn._wire import ProtocolError
from otel_gunicorn._worker.request_stats import RequestStats

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SPAN = 0xB7AD6B7169203331
T0 = 1_700_000_000_000_000_000
BOUNDS = (0.1, 1.0)
COUNTER = MetricMeta("app", "", "", "orders", "Orders.", "{order}", Kind.COUNTER)
LATENCY = MetricMeta("app", "", "", "latency", "", "s", Kind.HISTOGRAM)
GAUGE = MetricMeta("app", "", "", "temperature", "", "Cel", Kind.GAUGE)
GET = (("method", "GET"),)
RESOURCE = Resource.create({"service.name": "tests"})
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def hist(*counts: int) -> HistogramValue:
    return HistogramValue(sum(counts), 0.5, BOUNDS, counts, 0.05, 2.0)


def ex(value: float, at: int = 0, trace_id: int = TRACE, span_id: int = SPAN) -> Exemplar:
    return Exemplar(value, T0 + at, trace_id, span_id)


def sample(snapshot: Snapshot) -> Snapshot:
    return snapshot_from_payload(json.loads(json.dumps(payload_from_snapshot(snapshot))))


# ---------------------------------------------------------------- the wire

exemplars = st.builds(
    Exemplar,
    st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 2**64 - 1),
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.dictionaries(st.sampled_from(("a", "b.c")), st.sampled_from(("x", 1, 2.5, True))).map(
        lambda d: tuple(sorted(d.items()))
    ),
) | st.builds(Exemplar, st.floats(0, 5), st.integers(0, 2**63), st.just(0), st.just(0), st.just(()))


@settings(max_examples=200, deadline=None)
@given(counter=st.lists(exemplars, max_size=3), histogram=st.lists(exemplars, max_size=6))
def test_exemplars_survive_the_wire(counter: list[Exemplar], histogram: list[Exemplar]) -> None:
    """Exemplars of a counter and a histogram come out of the payload (through JSON) as they went in."""
    snapshot: Snapshot = {
        COUNTER: with_exemplars({GET: 3}, {GET: newest_per_bucket(counter, None)}),
        LATENCY: with_exemplars({GET: hist(1, 1, 1)}, {GET: newest_per_bucket(histogram, BOUNDS)}),
    }
    decoded = sample(snapshot)
    assert snapshot == decoded
    assert [dict(exemplars_of(p)) for p in snapshot.values()] == [dict(exemplars_of(p)) for p in decoded.values()]
    assert [fingerprint(p) for p in snapshot.values()] == [fingerprint(p) for p in decoded.values()]


def test_a_payload_without_exemplars_is_as_valid_as_ever() -> None:
    """No "x" anywhere: plain points dicts, no exemplars."""
    decoded = sample({COUNTER: {GET: 3}, LATENCY: {GET: hist(1, 0, 0)}})
    assert [dict, dict] == [type(points) for points in decoded.values()]


def payload_with(x: Any, meta: MetricMeta = LATENCY) -> dict[str, Any]:
    value = hist(1, 1, 1) if meta.kind is Kind.HISTOGRAM else 3
    payload = payload_from_snapshot({meta: {GET: value}})
    payload["metrics"][0]["points"][0]["x"] = x
    return payload


GOOD: list[Any] = [0.5, T0, f"{TRACE:032x}", f"{SPAN:016x}", {}]  # one exemplar as the payload carries it (JSON)


@pytest.mark.parametrize(
    ("x", "meta"),
    [
        pytest.param([GOOD, [0.7, T0, GOOD[2], GOOD[3], {}]], LATENCY, id="two in one bucket"),
        pytest.param([GOOD] * 4, LATENCY, id="more than buckets"),
        pytest.param([GOOD, GOOD], COUNTER, id="two on a counter"),
        pytest.param([GOOD], GAUGE, id="on a gauge"),
        pytest.param(GOOD, LATENCY, id="not a list of exemplars"),
        pytest.param([GOOD[:4]], LATENCY, id="four fields"),
        pytest.param([[0.5, T0, GOOD[2].upper(), GOOD[3], {}]], LATENCY, id="upper-case hex"),
        pytest.param([[0.5, T0, "+" + GOOD[2][1:], GOOD[3], {}]], LATENCY, id="signed hex"),
        pytest.param([[0.5, T0, GOOD[2], "0" * 16, {}]], LATENCY, id="trace without span"),
        pytest.param([[0.5, -1, GOOD[2], GOOD[3], {}]], LATENCY, id="negative time"),
        pytest.param([[0.5, True, GOOD[2], GOOD[3], {}]], LATENCY, id="boolean time"),
        pytest.param([[float("inf"), T0, GOOD[2], GOOD[3], {}]], LATENCY, id="infinite value"),
        pytest.param([[2**63, T0, GOOD[2], GOOD[3], {}]], COUNTER, id="beyond int64"),
        pytest.param([["1", T0, GOOD[2], GOOD[3], {}]], LATENCY, id="string value"),
        pytest.param([[0.5, T0, GOOD[2], GOOD[3], {"a": {"b": 1}}]], LATENCY, id="nested attribute"),
    ],
)
def test_bad_exemplars_are_a_protocol_error(x: Any, meta: MetricMeta) -> None:
    """Anything but at most one well-formed exemplar per bucket (counter: one) is refused like any bad payload."""
    with pytest.raises(ProtocolError):
        snapshot_from_payload(payload_with(x, meta))


def test_spanless_exemplars_have_zero_ids() -> None:
    """An exemplar made outside a span (always_on) travels with all-zero ids."""
    decoded = snapshot_from_payload(payload_with([[0.5, T0, "0" * 32, "0" * 16, {}]]))
    assert {GET: (Exemplar(0.5, T0, 0, 0),)} == exemplars_of(decoded[LATENCY])


def test_sdk_exemplars_are_encoded_newest_per_bucket() -> None:
    """The SDK's exemplars of a counter and a histogram (here always_on, inside a span) reach the payload."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], exemplar_filter=AlwaysOnExemplarFilter())
    meter = provider.get_meter("app")
    counter, histogram = meter.create_counter("orders"), meter.create_histogram("latency", unit="s")
    context = trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(TRACE, SPAN, False, TraceFlags(1))))
    counter.add(1, {"method": "GET"}, context=context)
    histogram.record(0.5, {"method": "GET"}, context=context)
    data = reader.get_metrics_data()
    assert data is not None
    decoded = snapshot_from_payload(json.loads(json.dumps(payload_from_metrics_data(data))))
    found = {meta.name: exemplars_of(points)[GET] for meta, points in decoded.items()}
    assert [(1, TRACE, SPAN)] == [(e.value, e.trace_id, e.span_id) for e in found["orders"]]
    assert [(0.5, TRACE, SPAN)] == [(e.value, e.trace_id, e.span_id) for e in found["latency"]]


def test_a_skipped_report_keeps_its_exemplars() -> None:
    """Of two reports read at once, the newer one is applied, carrying the older one's exemplars too."""
    older = {LATENCY: with_exemplars({GET: hist(1, 0, 0)}, {GET: (ex(0.05),)})}
    newer = {LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.5, 1),)})}
    assert {GET: (ex(0.05), ex(0.5, 1))} == exemplars_of(keep_exemplars(older, newer)[LATENCY])


# ---------------------------------------------------------------- the merge store


def merged_exemplars(store: MergeStore, meta: MetricMeta = LATENCY) -> Any:
    return dict(exemplars_of(store.merged()[meta]))


def test_newest_exemplar_of_each_bucket_wins_across_workers() -> None:
    """Two workers' exemplars of one series: per bucket the newest, whichever worker sent it."""
    store = MergeStore()
    store.report(1, 0, {LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.05, 5), ex(0.5, 1))})})
    store.report(2, 1, {LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.07, 2), ex(0.6, 3))})})
    assert {GET: (ex(0.05, 5), ex(0.6, 3))} == merged_exemplars(store)


def test_exemplars_outlive_the_report_and_the_worker() -> None:
    """A later report without exemplars, then the worker's death, leave the exemplar in place until a newer one."""
    store = MergeStore()
    store.report(1, 0, {COUNTER: with_exemplars({GET: 1}, {GET: (ex(1, 1),)})})
    store.report(1, 0, {COUNTER: {GET: 2}})
    store.drop_gauges(1)
    store.retire(1)
    assert {GET: (ex(1, 1),)} == merged_exemplars(store, COUNTER)
    store.report(2, 0, {COUNTER: with_exemplars({GET: 1}, {GET: (ex(1, 0),)})})  # older: ignored
    assert {GET: (ex(1, 1),)} == merged_exemplars(store, COUNTER)
    store.report(2, 0, {COUNTER: with_exemplars({GET: 2}, {GET: (ex(1, 9),)})})
    assert {GET: (ex(1, 9),)} == merged_exemplars(store, COUNTER)


def test_exemplars_stay_bounded_by_the_buckets() -> None:
    """A thousand reports of a thousand exemplars keep one per bucket."""
    store = MergeStore()
    for at in range(1000):
        value = (0.05, 0.5, 5.0)[at % 3]
        store.report(at % 4, None, {LATENCY: with_exemplars({GET: hist(1, 1, 1)}, {GET: (ex(value, at),)})})
    assert {GET: (ex(0.05, 999), ex(0.5, 997), ex(5.0, 998))} == merged_exemplars(store)


def test_a_new_exemplar_alone_changes_the_generation_and_the_fingerprint() -> None:
    """Equal points with a newer exemplar are a change: the scrape cache must render them again."""
    store = MergeStore()
    store.report(1, 0, {LATENCY: {GET: hist(1, 1, 0)}})
    before, generation = store.merged()[LATENCY], store.generation
    store.report(1, 0, {LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.5),)})})
    after = store.merged()[LATENCY]
    assert generation != store.generation
    assert before == after
    assert fingerprint(before) != fingerprint(after)


# ---------------------------------------------------------------- the exposition


def render(snapshot: Snapshot, accept: str | None) -> str:
    cache = ExpositionCache(lambda: dict(snapshot), lambda s: metrics_data_from_snapshot(s, RESOURCE, 1, 2))
    return cache.render(accept)[0].decode()


def test_openmetrics_carries_exemplars_on_buckets_and_totals() -> None:
    """The bucket of the exemplar's value and the counter's _total carry trace_id and span_id; the text format
    carries none; an exemplar without a trace is left out."""
    snapshot: Snapshot = {
        LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.05, 0, 0, 0), ex(0.5, 123_456_789))}),
        COUNTER: with_exemplars({GET: 3}, {GET: (ex(1),)}),
    }
    ids = f'{{span_id="{SPAN:016x}",trace_id="{TRACE:032x}"}}'
    lines = render(snapshot, OPENMETRICS).splitlines()
    marked = [line for line in lines if " # {" in line]
    assert 2 == len(marked), marked
    assert marked[0].startswith('latency_seconds_bucket{le="1.0",method="GET"')
    assert marked[0].endswith(f"2.0 # {ids} 0.5 1700000000.123456789")
    assert marked[1].startswith('orders_total{method="GET"')
    assert marked[1].endswith(f"3.0 # {ids} 1.0 1700000000.000000000")
    assert " # " not in render(snapshot, None)


# ---------------------------------------------------------------- OTLP


def test_sdk_data_points_carry_the_exemplars() -> None:
    """Histogram and counter points get the SDK's Exemplar objects; no span means no ids."""
    snapshot: Snapshot = {
        LATENCY: with_exemplars({GET: hist(1, 1, 0)}, {GET: (ex(0.05, 0, 0, 0), ex(0.5))}),
        COUNTER: with_exemplars({GET: 3}, {GET: (ex(1),)}),
    }
    data = metrics_data_from_snapshot(snapshot, RESOURCE, 1, 2)
    points = {m.name: m.data.data_points[0] for m in data.resource_metrics[0].scope_metrics[0].metrics}
    got = {name: [(e.value, e.trace_id, e.span_id) for e in p.exemplars] for name, p in points.items()}
    assert {"latency": [(0.05, None, None), (0.5, TRACE, SPAN)], "orders": [(1, TRACE, SPAN)]} == got


def test_deltas_keep_exemplars_and_each_is_sent_once() -> None:
    """A delta point keeps the exemplars; an exemplar already exported is not sent again."""
    first: Snapshot = {COUNTER: with_exemplars({GET: 3}, {GET: (ex(1),)})}
    second: Snapshot = {COUNTER: with_exemplars({GET: 5}, {GET: (ex(1),)})}
    assert {GET: (ex(1),)} == exemplars_of(delta(first, {})[COUNTER])
    assert {} == exemplars_of(unsent_exemplars(second, first)[COUNTER])
    third: Snapshot = {COUNTER: with_exemplars({GET: 6}, {GET: (ex(1, 1),)})}
    assert {GET: (ex(1, 1),)} == exemplars_of(unsent_exemplars(third, second)[COUNTER])


# ---------------------------------------------------------------- the request capture


def span(flags: int) -> Any:
    parent = trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(TRACE, SPAN, True, TraceFlags(flags))))
    return TracerProvider().get_tracer("t").start_span("GET", context=parent)


def closed(stats: RequestStats, request_span: Any, seconds: float = 0.5) -> None:
    stats.in_flight[1] = (100.0, GET, "GET", request_span, None, None)
    assert stats.closed(1, GET, seconds)


def taken(stats: RequestStats) -> Any:
    return dict(exemplars_of(stats.snapshot()[inst.REQUEST_DURATION.meta]))


def test_a_sampled_request_becomes_its_buckets_exemplar_once() -> None:
    """trace_based: the request's own span ids, its duration; the next report has it no more."""
    stats = RequestStats(BOUNDS, exemplar_filter="trace_based")
    request_span = span(1)
    closed(stats, request_span)
    (exemplar,) = taken(stats)[GET]
    context = request_span.get_span_context()
    assert (0.5, context.trace_id, context.span_id) == (exemplar.value, exemplar.trace_id, exemplar.span_id)
    assert {} == taken(stats)


@pytest.mark.parametrize(
    ("exemplar_filter", "flags", "expected"),
    [
        ("trace_based", 0, 0),  # unsampled span
        ("always_off", 1, 0),
        ("always_on", 0, 1),  # an unsampled span still has ids: the SDK keeps them
    ],
)
def test_the_filter_decides(exemplar_filter: str, flags: int, expected: int) -> None:
    """Which requests with a span become exemplars, per filter."""
    stats = RequestStats(BOUNDS, exemplar_filter=exemplar_filter)
    closed(stats, span(flags))
    assert expected == len(taken(stats).get(GET, ()))


def test_without_a_span_only_always_on_keeps_one_without_ids() -> None:
    """Tracing off: nothing under trace_based, an id-less exemplar under always_on."""
    for exemplar_filter, expected in (("trace_based", {}), ("always_on", {GET: 1})):
        stats = RequestStats(BOUNDS, exemplar_filter=exemplar_filter)
        closed(stats, None)
        found = taken(stats)
        assert expected == {key: len(found[key]) for key in found}
        assert all(e.trace_id == 0 == e.span_id for found_ in found.values() for e in found_)


def test_the_newest_request_of_each_bucket_is_kept() -> None:
    """Three requests, two in one bucket: that bucket keeps the later."""
    stats = RequestStats(BOUNDS, exemplar_filter="always_on")
    for seconds in (0.5, 0.05, 0.7):
        closed(stats, span(1), seconds)
    assert [0.05, 0.7] == [e.value for e in taken(stats)[GET]]


def test_span_context_layout_holds_trace_flags_at_index_3() -> None:
    """The request path reads a span context's trace flags by index (a third of the property's cost)."""
    context = SpanContext(TRACE, SPAN, False, TraceFlags(1))
    assert context.trace_flags is context[3]


# ---------------------------------------------------------------- the dashboard


def test_the_latency_panel_asks_for_exemplars() -> None:
    """The dashboard's latency queries have Grafana's exemplar toggle on."""
    panels = [p for p in dashboard.dashboard()["panels"] if p.get("title") == "Latency"]
    assert panels
    assert all(t.get("exemplar") is True for p in panels for t in p["targets"])


def test_points_with_exemplars_are_still_points() -> None:
    """ExemplarPoints equal the plain dict of their points and survive a deepcopy."""
    points = ExemplarPoints({GET: 1}, {GET: (ex(1),)})
    assert {GET: 1} == points
    assert {GET: (ex(1),)} == exemplars_of(copy.deepcopy(points))


def test_attach_exemplars_puts_app_exemplars_on_their_points() -> None:
    """The application instruments' exemplars join their series' points; an unknown metric or a gauge is skipped."""
    snapshot: Snapshot = {COUNTER: {GET: 3}, GAUGE: {GET: 1}}
    attached = attach_exemplars(snapshot, {COUNTER: {GET: (ex(1),)}, GAUGE: {GET: (ex(1),)}, LATENCY: {GET: (ex(1),)}})
    assert [{GET: (ex(1),)}, {}] == [dict(exemplars_of(points)) for points in attached.values()]


def test_with_tracing_off_a_callers_sampled_trace_is_the_requests_exemplar() -> None:
    """As the SDK does with a non-recording span: tracing off, a sampled ``traceparent`` makes the request's exemplar
    (trace_based) carry the caller's ids; an unsampled one, none."""
    import contextvars

    from otel_gunicorn._worker.requests import RequestObserver
    from otel_gunicorn._worker.tracing import RequestTracing
    from tests.unit.fake_requests import Req, Resp

    stats = RequestStats(BOUNDS, exemplar_filter="trace_based")
    observer = RequestObserver(stats, None, RequestTracing(None))

    def serve(req: Req) -> None:
        observer.started(req)
        observer.finished(req, {}, Resp())

    for trace_id, flags in ((TRACE, "01"), (TRACE + 1, "00")):  # the unsampled one last: it would be the newest
        req = Req()
        req.headers = [("TRACEPARENT", f"00-{trace_id:032x}-{SPAN:016x}-{flags}")]
        contextvars.Context().run(serve, req)
    [(key, exemplars)] = taken(stats).items()
    assert [(TRACE, SPAN)] == [(e.trace_id, e.span_id) for e in exemplars]
