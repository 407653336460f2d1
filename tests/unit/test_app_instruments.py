"""The application's synchronous instruments, aggregated by otel_gunicorn: the same points as the SDK, cheaper."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context
from opentelemetry.metrics import Counter, Histogram, NoOpMeter, UpDownCounter, _Gauge
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    MeterProvider,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_gunicorn._snapshot import Kind, payload_from_metrics_data, payload_from_snapshot
from otel_gunicorn._worker import app_instruments
from otel_gunicorn._worker.app_instruments import DEFAULT_BOUNDARIES, OVERFLOW_KEY, FastCounter, FastHistogram
from otel_gunicorn._worker.app_meter import AppMeterProvider


@pytest.fixture
def provider() -> Iterator[AppMeterProvider]:
    yield from _provider(AlwaysOffExemplarFilter())


def _provider(exemplar_filter: ExemplarFilter) -> Iterator[AppMeterProvider]:
    made = AppMeterProvider([InMemoryMetricReader()], Resource.get_empty(), exemplar_filter)
    yield made
    made.shutdown()


def _points(provider: AppMeterProvider) -> dict[tuple[str, Kind], dict[Any, Any]]:
    return {(meta.name, meta.kind): points for meta, points in provider.app_instruments.snapshot().items()}


# ---------------------------------------------------------------- the same payload as the SDK


Scope = tuple[str, str, str]
INSTRUMENTS: list[tuple[str, Scope, str, str, str] | tuple[str, Scope, str, str, str, tuple[float, ...]]] = [
    # (kind, scope, name, unit, description[, advisory boundaries])
    ("counter", ("app", "1.0", ""), "app.requests", "{request}", "Requests."),
    ("counter", ("lib", "", "https://opentelemetry.io/schemas/1.21.0"), "Lib.Calls", "", ""),
    ("up_down_counter", ("app", "1.0", ""), "app.in_flight", "{request}", ""),
    ("histogram", ("app", "1.0", ""), "app.duration", "s", "How long."),
    ("histogram", ("lib", "", ""), "lib.size", "By", "", (0, 10, 100)),
    ("gauge", ("app", "1.0", ""), "app.temperature", "Cel", ""),
]
ATTRIBUTES = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["route", "method", "tags"]),
        st.one_of(st.sampled_from(["/a", "/b", "GET"]), st.integers(0, 2), st.lists(st.sampled_from("xy"), max_size=2)),
        max_size=2,
    ),
)
AMOUNTS = st.one_of(
    st.integers(-3, 1000),
    st.floats(-10, 20_000, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 5.0, 10]),
)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.integers(0, len(INSTRUMENTS) - 1), AMOUNTS, ATTRIBUTES),
        st.just("collect"),
    ),
    max_size=40,
)


def _instrument(provider: MeterProvider, index: int) -> Any:
    kind, scope, name, unit, description, *advisory = INSTRUMENTS[index]
    meter = provider.get_meter(*scope)
    if kind == "histogram":
        boundaries = advisory[0] if advisory else None
        return meter.create_histogram(name, unit, description, explicit_bucket_boundaries_advisory=boundaries).record
    if kind == "gauge":
        return meter.create_gauge(name, unit, description).set
    return getattr(meter, f"create_{kind}")(name, unit, description).add


def _comparable(payload: dict[str, Any]) -> dict[Any, Any]:
    """A payload as a dict of metrics, each a dict of points: the order of either does not matter."""
    return {
        (tuple(m["scope"]), m["name"], m["description"], m["unit"], m["kind"]): {
            json.dumps(point["a"], sort_keys=True): {k: v for k, v in point.items() if k != "a"}
            for point in m["points"]
        }
        for m in payload["metrics"]
        if m["points"]
    }


def _sdk_payload(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    return payload_from_metrics_data(data) if data is not None else {"metrics": []}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPERATIONS)
def test_same_payload_as_the_sdk(operations: list[Any]) -> None:
    """Any sequence of measurements and reports gives the payload the SDK's own aggregation gave."""
    logging.disable(logging.WARNING)  # the rejected amounts' warnings, hundreds of them
    sdk_reader, fast_reader = InMemoryMetricReader(), InMemoryMetricReader()
    sdk = MeterProvider([sdk_reader], Resource.get_empty(), AlwaysOffExemplarFilter())
    fast = AppMeterProvider([fast_reader], Resource.get_empty(), AlwaysOffExemplarFilter())
    try:
        for operation in [*operations, "collect"]:
            if operation == "collect":
                expected = _comparable(_sdk_payload(sdk_reader))
                # what the worker's exporter sends: the SDK's collection (empty here) and the fast instruments'
                ours = _sdk_payload(fast_reader)
                ours["metrics"] += payload_from_snapshot(fast.app_instruments.snapshot())["metrics"]
                assert expected == _comparable(ours)
                continue
            index, amount, attributes = operation
            _instrument(sdk, index)(amount, attributes)
            _instrument(fast, index)(amount, attributes)
    finally:
        logging.disable(logging.NOTSET)
        sdk.shutdown()
        fast.shutdown()


def test_no_measurement_no_metric(provider: AppMeterProvider) -> None:
    """An instrument that has had no measurement is not reported, as in the SDK."""
    provider.get_meter("app").create_counter("idle")
    provider.get_meter("app").create_histogram("idle.too")

    assert {} == provider.app_instruments.snapshot()


# ---------------------------------------------------------------- the instruments


def test_instruments_are_the_api_classes(provider: AppMeterProvider) -> None:
    """Each fast instrument is an instance of the API class the application asked for."""
    meter = provider.get_meter("app")

    assert isinstance(meter.create_counter("a"), Counter)
    assert isinstance(meter.create_up_down_counter("b"), UpDownCounter)
    assert isinstance(meter.create_histogram("c"), Histogram)
    assert isinstance(meter.create_gauge("d"), _Gauge)


def test_same_identity_same_instrument(provider: AppMeterProvider) -> None:
    """The same name (in any case), unit and description in one scope give the same instrument back."""
    first = provider.get_meter("app", "1").create_counter("Requests", "{request}", "Requests.")

    assert first is provider.get_meter("app", "1").create_counter("requests", "{request}", "Requests.")


def test_conflicting_advisory_warns_and_keeps_the_first(
    provider: AppMeterProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The same histogram again with other advisory boundaries: the SDK's warning, and the first one's buckets."""
    meter = provider.get_meter("app")
    first = meter.create_histogram("h", explicit_bucket_boundaries_advisory=[1, 2])
    again = meter.create_histogram("h", explicit_bucket_boundaries_advisory=[5])

    assert first is again
    assert "different advisory value" in caplog.text


def test_same_name_other_unit_is_reported_apart(provider: AppMeterProvider) -> None:
    """Two instruments of one name and different units are two metrics, as the SDK reports them."""
    meter = provider.get_meter("app")
    meter.create_counter("requests", "{request}").add(1)
    meter.create_counter("requests", "1").add(2)

    assert {"{request}": 1, "1": 2} == {
        meta.unit: points[()] for meta, points in provider.app_instruments.snapshot().items()
    }


def test_instruments_made_through_the_api_proxy_are_fast(provider: AppMeterProvider) -> None:
    """An instrument made before the provider was set (at import time) records through the fast path after."""
    proxy = _ProxyMeterProvider()
    counter = proxy.get_meter("app").create_counter("early")
    counter.add(5)  # before the provider: dropped, as the API does
    proxy.on_set_meter_provider(provider)
    counter.add(1, {"route": "/"})

    assert isinstance(counter._real_instrument, FastCounter)  # type: ignore[attr-defined]
    assert {("early", Kind.COUNTER): {(("route", "/"),): 1}} == _points(provider)


def test_sdk_disabled_gives_the_noop_meter(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: the SDK's no-op meter, as before."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    for made in _provider(AlwaysOffExemplarFilter()):
        assert isinstance(made.get_meter("app"), NoOpMeter)


def test_concurrent_adds_are_exact(provider: AppMeterProvider) -> None:
    """Threads adding and recording at once lose nothing."""
    counter = provider.get_meter("app").create_counter("hits")
    histogram = provider.get_meter("app").create_histogram("sizes")
    threads, each = 8, 5_000

    def work(n: int) -> None:
        attributes = {"thread": n % 2}
        for _ in range(each):
            counter.add(1, attributes)
            histogram.record(3, attributes)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    points = _points(provider)

    assert {(("thread", 0),): threads * each // 2, (("thread", 1),): threads * each // 2} == points[
        ("hits", Kind.COUNTER)
    ]
    assert [threads * each // 2] * 2 == [h.count for h in points[("sizes", Kind.HISTOGRAM)].values()]


def test_negative_and_nan_are_dropped_with_the_sdk_warning(
    provider: AppMeterProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A negative or non-finite amount is refused in the SDK's words, and nothing is recorded."""
    meter = provider.get_meter("app")
    meter.create_counter("c").add(-1)
    meter.create_histogram("h").record(math.nan)
    meter.create_up_down_counter("u").add(math.inf)
    meter.create_gauge("g").set(-math.inf)

    assert {} == provider.app_instruments.snapshot()
    assert "Add amount must be non-negative on Counter c" in caplog.text
    assert "Record amount nan is not finite on Histogram h" in caplog.text


def test_up_down_counter_and_gauge(provider: AppMeterProvider) -> None:
    """An up-down counter sums negative amounts too; a gauge keeps the last value."""
    meter = provider.get_meter("app")
    meter.create_up_down_counter("u").add(2)
    meter.create_up_down_counter("u").add(-5)
    meter.create_gauge("g").set(3)
    meter.create_gauge("g").set(-1.5)

    assert {("u", Kind.UPDOWNCOUNTER): {(): -3}, ("g", Kind.GAUGE): {(): -1.5}} == _points(provider)


def test_histogram_buckets_are_le(provider: AppMeterProvider) -> None:
    """A value equal to a boundary counts in the bucket that boundary closes; default boundaries are the SDK's."""
    histogram = provider.get_meter("app").create_histogram("h")
    histogram.record(5)
    histogram.record(5.5)
    point = _points(provider)[("h", Kind.HISTOGRAM)][()]

    assert DEFAULT_BOUNDARIES == point.bounds
    assert (0, 1, 1) == point.counts[:3]
    assert (2, 10.5, 5, 5.5) == (point.count, point.sum, point.min, point.max)


def test_advisory_boundaries(provider: AppMeterProvider) -> None:
    """explicit_bucket_boundaries_advisory sets the buckets."""
    histogram = provider.get_meter("app").create_histogram("h", explicit_bucket_boundaries_advisory=[1, 2])
    histogram.record(1.5)

    assert ((1.0, 2.0), (0, 1, 0)) == _bounds_and_counts(provider)


def _bounds_and_counts(provider: AppMeterProvider) -> tuple[Any, Any]:
    point = _points(provider)[("h", Kind.HISTOGRAM)][()]
    return tuple(map(float, point.bounds)), point.counts


def test_invalid_advisory_stays_with_the_sdk(provider: AppMeterProvider) -> None:
    """Boundaries the SDK refuses leave the histogram to the SDK, which raises on record as it always did."""
    histogram = provider.get_meter("app").create_histogram("h", explicit_bucket_boundaries_advisory=[2, 1])

    assert not isinstance(histogram, FastHistogram)
    with pytest.raises(ValueError, match="strictly increasing"):
        histogram.record(1)


def test_list_attributes_and_key_order(provider: AppMeterProvider) -> None:
    """List values and any order of the same items land in one series."""
    counter = provider.get_meter("app").create_counter("c")
    counter.add(1, {"tags": ["a", "b"], "route": "/"})
    counter.add(1, {"route": "/", "tags": ("a", "b")})

    assert {(("route", "/"), ("tags", ("a", "b"))): 2} == _points(provider)[("c", Kind.COUNTER)]


def test_cardinality_limit_overflows_as_the_sdk(provider: AppMeterProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the SDK's limit of attribute sets, new ones count in the otel.metric.overflow series."""
    monkeypatch.setattr(app_instruments, "CARDINALITY_LIMIT", 2)
    counter = provider.get_meter("app").create_counter("c")
    for n in range(5):
        counter.add(1, {"n": n})
    counter.add(1, {"n": 0})

    assert {(("n", 0),): 2, (("n", 1),): 1, OVERFLOW_KEY: 3} == _points(provider)[("c", Kind.COUNTER)]


# ---------------------------------------------------------------- exemplars


@pytest.fixture
def tracer() -> Any:
    return TracerProvider().get_tracer("test")


@pytest.mark.parametrize(
    ("chosen", "outside", "sampled", "unsampled"),
    [
        (TraceBasedExemplarFilter(), False, True, False),
        (AlwaysOnExemplarFilter(), True, True, True),
        (AlwaysOffExemplarFilter(), False, False, False),
    ],
)
def test_exemplar_filters(chosen: ExemplarFilter, outside: bool, sampled: bool, unsampled: bool, tracer: Any) -> None:
    """Which measurements each filter keeps: outside any span, in a sampled span, in an unsampled one."""
    unsampled_tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    for made in _provider(chosen):
        counter = made.get_meter("app").create_counter("c")
        kept = []
        counter.add(1)
        kept.append(bool(made.app_instruments.exemplars()))
        with tracer.start_as_current_span("s"):
            counter.add(1)
        kept.append(bool(made.app_instruments.exemplars()))
        with unsampled_tracer.start_as_current_span("s"):
            counter.add(1)
        kept.append(bool(made.app_instruments.exemplars()))

        assert [outside, sampled, unsampled] == kept


def test_counter_keeps_the_newest_exemplar_with_its_span(tracer: Any) -> None:
    """A counter series keeps its newest exemplar, with the span's trace and span ids; a report takes it."""
    for made in _provider(TraceBasedExemplarFilter()):
        counter = made.get_meter("app").create_counter("c")
        with tracer.start_as_current_span("first"):
            counter.add(1, {"route": "/"})
        with tracer.start_as_current_span("second") as span:
            counter.add(7, {"route": "/"})
        (by_series,) = made.app_instruments.exemplars().values()
        ((exemplar,),) = by_series.values()

        ids = span.get_span_context()
        assert (7, ids.trace_id, ids.span_id, ()) == (
            exemplar.value,
            exemplar.trace_id,
            exemplar.span_id,
            exemplar.attributes,
        )
        assert {} == made.app_instruments.exemplars()


def test_histogram_keeps_the_newest_exemplar_per_bucket(tracer: Any) -> None:
    """A histogram series keeps one exemplar per bucket, the newest, ordered by bucket."""
    for made in _provider(TraceBasedExemplarFilter()):
        histogram = made.get_meter("app").create_histogram("h", explicit_bucket_boundaries_advisory=[1, 10])
        with tracer.start_as_current_span("s"):
            for value in (20, 0.5, 3, 0.7):
                histogram.record(value)
        (by_series,) = made.app_instruments.exemplars().values()

        assert [0.7, 3, 20] == [exemplar.value for exemplar in by_series[()]]


def test_exemplar_uses_the_context_given(tracer: Any) -> None:
    """The ``context`` argument, not the current one, decides the exemplar."""
    for made in _provider(TraceBasedExemplarFilter()):
        counter = made.get_meter("app").create_counter("c")
        with tracer.start_as_current_span("s"):
            captured = context.get_current()
        counter.add(1, context=captured)

        assert made.app_instruments.exemplars()
