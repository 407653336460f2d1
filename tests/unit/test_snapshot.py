"""Unit tests for snapshot payloads (otel_gunicorn._snapshot): SDK data -> JSON -> validated snapshot -> SDK data."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """An in-memory reader attached to an explicit (never the global) MeterProvider."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield reader
    provider.shutdown()


@pytest.fixture
def meter(reader: InMemoryMetricReader) -> Meter:
    """A meter of the explicit provider behind ``reader``."""
    return reader._sdk_config_meter_provider().get_meter(*SCOPE) if False else _meter_of(reader)


_PROVIDERS: dict[int, MeterProvider] = {}


def _meter_of(reader: InMemoryMetricReader) -> Meter:
    raise NotImplementedError


def meta(name: str, kind: Kind, *, unit: str = "", description: str = "") -> MetricMeta:
    """A MetricMeta in the test scope."""
    return MetricMeta(*SCOPE, name, description, unit, kind)


def through_json(reader: InMemoryMetricReader) -> Snapshot:
    """Collect, encode as a worker does, send through JSON, validate as the arbiter does."""
    payload = payload_from_metrics_data(reader.get_metrics_data())
    return snapshot_from_payload(json.loads(json.dumps(payload)))
