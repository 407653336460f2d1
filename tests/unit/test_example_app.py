"""The example application (examples/app.py, what `make demo` serves) records its durations the way users should."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, InMemoryMetricReader]]:
    """examples.app imported afresh, its instruments created by a provider of the test's own."""
    reader = InMemoryMetricReader()
    monkeypatch.setattr(metrics, "get_meter", MeterProvider(metric_readers=[reader]).get_meter)
    sys.modules.pop("examples.app", None)
    try:
        yield importlib.import_module("examples.app"), reader
    finally:
        sys.modules.pop("examples.app", None)


def test_the_work_histogram_spreads_its_seconds_over_several_buckets(example):
    """One request per page of the demo: durations of about 0, 2 and 20 ms fall in different buckets (before: the
    SDK's default boundaries, meant for milliseconds, put every one of them in the first)."""
    module, reader = example
    for path in ("/", "/cart", "/checkout"):
        module.app({"PATH_INFO": path}, lambda status, headers: None)
    data = reader.get_metrics_data()
    [point] = [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "app.work.duration"
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    ]
    assert 3 == point.count
    assert sum(1 for count in point.bucket_counts if count) >= 2, point  # 3, unless a sleep overshoots a lot
    assert point.explicit_bounds[-1] <= 60  # seconds, not milliseconds
