"""Each OpenTelemetry private name otel_gunicorn relies on, pinned against the installed packages.

An upgrade that moves, renames or changes one of them fails here with the name of what moved: the one module that
imports them (``otel_gunicorn._otel_compat``) is then the one place to adapt.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import DataPointT, HistogramDataPoint, InMemoryMetricReader

from otel_gunicorn import _otel_compat as compat

PACKAGE = Path(compat.__file__).parent
# What only the compat module may name: OpenTelemetry's private modules, constants and attributes.
PRIVATE_NAMES = ("._internal", "._mapping", "_SPAN_KEY", "_RUNTIME_CONTEXT", "._advisory", '"_advisory"', "_Gauge")
PRIVATE_MODULES = ("opentelemetry.sdk._logs", "_log_exporter import")


def test_only_the_compat_module_names_opentelemetry_private_names() -> None:
    """No module of the package but the compat module imports or reads an OpenTelemetry private name."""
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(compat.__file__)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(name in line for name in PRIVATE_NAMES + PRIVATE_MODULES)
    ]
    assert [] == offenders


def data_points(reader: InMemoryMetricReader) -> list[DataPointT]:
    """The points of the one metric the reader collects now."""
    data = reader.get_metrics_data()
    assert data is not None
    return list(data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points)


def test_span_key_is_where_the_api_keeps_the_current_span() -> None:
    """``SPAN_KEY`` is the context key under which ``trace.set_span_in_context`` stores the span."""
    span = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
    assert span is trace.set_span_in_context(span).get(compat.SPAN_KEY)


def test_context_reader_reads_the_current_context_variable() -> None:
    """The reader sees a context attached through the API, without going through ``get_current``."""
    reader = compat.context_reader()
    assert reader is not otel_context.get_current, "the runtime context moved: the fast path is gone"
    token = otel_context.attach(otel_context.set_value("pinned", 1))
    try:
        assert 1 == reader().get("pinned")
    finally:
        otel_context.detach(token)


def test_sdk_default_boundaries_are_the_histograms_default() -> None:
    """A histogram without advisory gets exactly ``SDK_DEFAULT_BOUNDARIES`` from the SDK."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("pin")
    meter.create_histogram("h").record(1)
    (point,) = data_points(reader)
    assert isinstance(point, HistogramDataPoint)
    assert compat.SDK_DEFAULT_BOUNDARIES == tuple(point.explicit_bounds)


def test_sdk_cardinality_limit_is_where_series_overflow() -> None:
    """The SDK keeps ``SDK_CARDINALITY_LIMIT`` distinct attribute sets and folds every later one into one overflow."""
    reader = InMemoryMetricReader()
    counter = MeterProvider(metric_readers=[reader]).get_meter("pin").create_counter("c")
    for index in range(compat.SDK_CARDINALITY_LIMIT + 5):
        counter.add(1, {"i": index})
    points = data_points(reader)
    assert compat.SDK_CARDINALITY_LIMIT + 1 == len(points)
    assert any(dict(p.attributes or {}) == {"otel.metric.overflow": True} for p in points)


def test_advisory_boundaries_reads_what_the_histogram_was_created_with() -> None:
    """The SDK histogram keeps its advisory where ``advisory_boundaries`` reads it; None without one."""
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("pin")
    advised = meter.create_histogram("a", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    assert [0.1, 1.0] == list(compat.advisory_boundaries(advised))
    assert compat.advisory_boundaries(meter.create_histogram("b")) is None


def test_measurement_cleans_attributes_as_the_sdk_does() -> None:
    """``Measurement(value, time, instrument, context, attributes)`` cleans attributes: a list becomes a tuple."""
    instrument = MeterProvider().get_meter("pin").create_counter("m")
    assert isinstance(instrument, Counter)  # the SDK's counter, which Measurement takes; the API types it as its own
    measurement = compat.Measurement(0, 0, instrument, otel_context.Context(), {"k": [1, 2]})
    assert {"k": (1, 2)} == dict(measurement.attributes or {})


def test_api_gauge_is_what_create_gauge_returns() -> None:
    """``APIGauge`` is the API class the SDK's synchronous gauge implements."""
    assert isinstance(MeterProvider().get_meter("pin").create_gauge("g"), compat.APIGauge)


@pytest.mark.parametrize(
    ("function", "argument", "expected"),
    [
        ("sanitize_full_name", "gunicorn.worker.exits", "gunicorn_worker_exits"),
        ("map_unit", "s", "seconds"),
        ("map_unit", "{request}", ""),
        ("sanitize_attribute", "http.route", "http_route"),
    ],
)
def test_prometheus_mapping_functions(function: str, argument: str, expected: str) -> None:
    """The exporter's mapping functions still exist and map names, units and keys as the endpoint shows them."""
    assert expected == getattr(compat, function)(argument)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_otlp_log_exporter_class(protocol: str) -> None:
    """Each protocol's OTLP log exporter is a ``LogRecordExporter`` of the package its protocol names."""
    exporter = compat.otlp_log_exporter_class(protocol)
    assert issubclass(exporter, compat.LogRecordExporter)
    assert ("grpc" if protocol == "grpc" else "http") in exporter.__module__


def test_logs_sdk_names_exist() -> None:
    """The logs SDK's classes the worker builds its log export from are importable through the compat module."""
    names = ("LoggerProvider", "LoggingHandler", "BatchLogRecordProcessor", "ConsoleLogRecordExporter")
    assert all(isinstance(getattr(compat, name), type) for name in names)
    assert hasattr(compat.LogRecordExportResult, "SUCCESS")


def test_compat_module_imports_nothing_heavy() -> None:
    """Importing the compat module loads neither the Prometheus exporter nor grpc (a worker needs neither)."""
    heavy = "('grpc', 'opentelemetry.exporter.prometheus')"
    code = f"import sys, otel_gunicorn._otel_compat; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "[]" == out.strip()


def test_every_exported_name_exists() -> None:
    """``__all__`` lists only names the module has (an import that moved would have failed at import already)."""
    module = importlib.import_module("otel_gunicorn._otel_compat")
    assert [] == [name for name in module.__all__ if not hasattr(module, name)]


def test_reset_meter_provider_empties_the_global_slot() -> None:
    """After the reset the API hands out its proxy again, and a new provider is accepted as the global one."""
    from opentelemetry import metrics

    compat.reset_meter_provider()
    metrics.set_meter_provider(first := MeterProvider())
    compat.reset_meter_provider()
    proxy = metrics.get_meter_provider()
    metrics.set_meter_provider(second := MeterProvider())
    try:
        assert (False, second) == (proxy is first, metrics.get_meter_provider())
    finally:
        compat.reset_meter_provider()
