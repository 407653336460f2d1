"""A worker's cumulative metrics as plain data: built from SDK ``MetricsData`` in the worker, validated in the arbiter.

The payload is deliberately simple JSON (see :mod:`otel_gunicorn._wire`)::

    {"metrics": [{"scope": [name, version, schema_url], "name": ..., "description": ..., "unit": ...,
                  "kind": "counter" | "updowncounter" | "gauge" | "histogram",
                  "points": [{"a": {attributes}, "v": number}                       # counter, updowncounter, gauge
                             {"a": {...}, "n": count, "s": sum, "b": [bounds], "c": [counts],
                              "lo": min, "hi": max}]}]}                               # histogram

Everything is cumulative since the worker started: a lost report loses nothing but freshness, and the arbiter
can apply the same report twice without counting anything twice.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import marshal
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_gunicorn._wire import ProtocolError

_log = logging.getLogger("otel_gunicorn")

AttrValue = str | bool | int | float | tuple
AttrKey = tuple[tuple[str, AttrValue], ...]


class Kind(str, enum.Enum):
    """How a metric merges across workers (``docs/usage.md``, "How the numbers are merged")."""

    COUNTER = "counter"
    """Summed; a dead worker's total is kept."""
    UPDOWNCOUNTER = "updowncounter"
    """Summed over live workers only."""
    GAUGE = "gauge"
    """One series per live worker slot."""
    HISTOGRAM = "histogram"
    """Buckets, count and sum added; a dead worker's totals are kept."""

    @property
    def is_total(self) -> bool:
        """A running total (counter, histogram): kept when its worker dies, and what a delta is taken of."""
        return self is Kind.COUNTER or self is Kind.HISTOGRAM


class MetricMeta(NamedTuple):
    """Identity of one metric stream: its scope, name, kind and unit.

    A NamedTuple rather than a frozen dataclass: it is a dict key in every merge, and a tuple hashes in C.
    """

    scope_name: str
    scope_version: str
    scope_schema_url: str
    name: str
    description: str
    unit: str
    kind: Kind


@dataclasses.dataclass(frozen=True)
class HistogramValue:
    """One cumulative explicit-bucket histogram point."""

    count: int
    sum: float
    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    min: float
    max: float


Value = int | float | HistogramValue


class Exemplar(NamedTuple):
    """One measurement kept with the trace it was made in (an OpenTelemetry exemplar), as a worker samples it.

    A counter series keeps at most one (the newest); a histogram series at most one per bucket (the newest), the
    bucket being ``bisect_left(bounds, value)`` as for the bucket counts. ``trace_id`` and ``span_id`` are the span
    context's integers (128 and 64 bits); ``attributes`` the measurement's attributes that are not the series' own
    (empty unless a view drops some).
    """

    value: int | float
    time_unix_nano: int
    trace_id: int
    span_id: int
    attributes: AttrKey = ()
Snapshot = dict[MetricMeta, dict[AttrKey, Value]]


def attr_key(attributes: Mapping[str, Any] | None) -> AttrKey:
    """Attributes as a hashable, order-independent key (sequences become tuples)."""
    if not attributes:
        return ()
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in attributes.items()))


def fingerprint(points: Mapping[AttrKey, Value]) -> bytes:
    """An exact form of one metric's points, to tell whether two are the same without rendering them.

    Equal only when both have the same keys and values in the same order and of the same types: unlike ``==``,
    ``1``, ``1.0`` and ``True`` differ (a label renders as ``1``, ``1.0`` or ``true``), and so do ``0.0`` and ``-0.0``;
    a NaN equals itself. Not stable across Python versions: compare fingerprints of one process only.
    """
    values: Any = tuple(points.values())
    try:
        # marshal version 2 has no back-references, so the bytes depend on the values only, not on object sharing
        return marshal.dumps((tuple(points), values), 2)
    except ValueError:  # histogram points
        values = tuple(
            (v.count, v.sum, v.bounds, v.counts, v.min, v.max) if isinstance(v, HistogramValue) else v for v in values
        )
        return marshal.dumps((tuple(points), values), 2)


# ---------------------------------------------------------------- worker side: SDK data -> payload


def payload_from_metrics_data(data: MetricsData) -> dict[str, Any]:
    """Turn one SDK collection into the JSON payload a worker sends."""
    metrics = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            scope_id = [scope.name or "", scope.version or "", scope.schema_url or ""]
            for metric in scope_metrics.metrics:
                encoded = _encode_metric(metric.data)
                if encoded is None:
                    _log.debug("otel_gunicorn: %s has an unsupported data type and is not reported", metric.name)
                    continue
                kind, points = encoded
                metrics.append(
                    {
                        "scope": scope_id,
                        "name": metric.name,
                        "description": metric.description or "",
                        "unit": metric.unit or "",
                        "kind": kind,
                        "points": points,
                    }
                )
    return {"metrics": metrics}


def _encode_metric(data: Any) -> tuple[str, list[dict[str, Any]]] | None:
    if isinstance(data, Sum):
        kind = Kind.COUNTER if data.is_monotonic else Kind.UPDOWNCOUNTER
        return kind.value, [{"a": dict(p.attributes or {}), "v": p.value} for p in data.data_points]
    if isinstance(data, Gauge):
        return Kind.GAUGE.value, [{"a": dict(p.attributes or {}), "v": p.value} for p in data.data_points]
    if isinstance(data, Histogram):
        points = [
            {
                "a": dict(p.attributes or {}),
                "n": p.count,
                "s": p.sum,
                "b": list(p.explicit_bounds),
                "c": list(p.bucket_counts),
                "lo": p.min,
                "hi": p.max,
            }
            for p in data.data_points
        ]
        return Kind.HISTOGRAM.value, points
    return None  # exponential histograms are not merged (documented limitation)


def payload_from_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON payload of a (merged) snapshot: the inverse of :func:`snapshot_from_payload`."""
    metrics = []
    for meta, points in snapshot.items():
        encoded = []
        for key, value in points.items():
            attributes = {k: list(v) if isinstance(v, tuple) else v for k, v in key}
            if isinstance(value, HistogramValue):
                encoded.append(
                    {
                        "a": attributes,
                        "n": value.count,
                        "s": value.sum,
                        "b": list(value.bounds),
                        "c": list(value.counts),
                        "lo": value.min,
                        "hi": value.max,
                    }
                )
            else:
                encoded.append({"a": attributes, "v": value})
        metrics.append(
            {
                "scope": [meta.scope_name, meta.scope_version, meta.scope_schema_url],
                "name": meta.name,
                "description": meta.description,
                "unit": meta.unit,
                "kind": meta.kind.value,
                "points": encoded,
            }
        )
    return {"metrics": metrics}


# ---------------------------------------------------------------- arbiter side: payload -> validated Snapshot


def snapshot_from_payload(payload: Any) -> Snapshot:
    """Validate a decoded payload into a :data:`Snapshot`; raise :class:`ProtocolError` on anything unexpected."""
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), list):
        raise ProtocolError("snapshot payload must be an object with a 'metrics' list")
    snapshot: Snapshot = {}
    for raw in payload["metrics"]:
        meta = _meta(raw)
        points = snapshot.setdefault(meta, {})
        for raw_point in _field(raw, "points", list):
            if not isinstance(raw_point, dict):
                raise ProtocolError("a point must be an object")
            key = attr_key(_attributes(raw_point.get("a", {})))
            points[key] = _histogram(raw_point) if meta.kind is Kind.HISTOGRAM else _number(raw_point, "v")
    return snapshot


def _meta(raw: Any) -> MetricMeta:
    if not isinstance(raw, dict):
        raise ProtocolError("a metric must be an object")
    scope = _field(raw, "scope", list)
    if len(scope) != 3 or not all(isinstance(part, str) for part in scope):
        raise ProtocolError("scope must be [name, version, schema_url]")
    try:
        kind = Kind(_field(raw, "kind", str))
    except ValueError:
        raise ProtocolError(f"unknown metric kind {raw.get('kind')!r}") from None
    name = _field(raw, "name", str)
    if not name:
        raise ProtocolError("metric name is empty")
    scope_name, scope_version, scope_schema_url = scope
    return MetricMeta(
        scope_name,
        scope_version,
        scope_schema_url,
        name,
        _field(raw, "description", str),
        _field(raw, "unit", str),
        kind,
    )


def _field(raw: dict[str, Any], name: str, kind: type) -> Any:
    value = raw.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"field {name!r} must be {kind.__name__}")
    return value


def _attributes(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError("attributes must be an object")
    for value in raw.values():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, (str, bool, int, float)) for item in items):
            raise ProtocolError("attribute values must be strings, booleans, numbers or lists of them")
    return raw


def _number(raw: dict[str, Any], name: str) -> int | float:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"field {name!r} must be a number")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range
        raise ProtocolError(f"number out of range: {str(value)[:20]}...") from None


def _histogram(raw: dict[str, Any]) -> HistogramValue:
    count = raw.get("n")
    bounds = tuple(_float(_number({"x": b}, "x")) for b in _field(raw, "b", list))
    raw_counts = _field(raw, "c", list)
    if not _is_count(count) or not all(_is_count(c) for c in raw_counts):
        raise ProtocolError("histogram counts must be non-negative integers")
    counts: tuple[int, ...] = tuple(raw_counts)
    if len(counts) != len(bounds) + 1 or sum(counts) != count:
        raise ProtocolError("histogram buckets do not match its bounds or count")
    if any(not math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
        raise ProtocolError("histogram bounds must be finite and strictly increasing")
    return HistogramValue(
        count, _number(raw, "s"), bounds, counts, _float(_number(raw, "lo")), _float(_number(raw, "hi"))
    )


# ---------------------------------------------------------------- arbiter side: merged Snapshot -> SDK MetricsData


def metrics_data_from_snapshot(
    snapshot: Snapshot, resource: Resource, start_time_ns: int, now_ns: int, delta_start_ns: int | None = None
) -> MetricsData:
    """Build SDK ``MetricsData`` (what every SDK exporter consumes) from a merged snapshot, cumulative since start.

    With ``delta_start_ns``, counters and histograms are marked as deltas since that time instead (the caller has
    already subtracted; see :mod:`otel_gunicorn._exporter.temporality`).
    """
    by_scope: dict[tuple[str, str, str], list[Metric]] = {}
    for meta, points in snapshot.items():
        if not points:
            continue
        temporality = AggregationTemporality.CUMULATIVE
        start_ns = start_time_ns
        if delta_start_ns is not None and meta.kind.is_total:
            temporality, start_ns = AggregationTemporality.DELTA, delta_start_ns
        data = _sdk_data(meta.kind, points, start_ns, now_ns, temporality)
        metric = Metric(name=meta.name, description=meta.description, unit=meta.unit, data=data)
        by_scope.setdefault((meta.scope_name, meta.scope_version, meta.scope_schema_url), []).append(metric)
    scope_metrics = [
        ScopeMetrics(
            scope=InstrumentationScope(name, version or None, schema_url or None),
            metrics=metrics,
            schema_url=schema_url,
        )
        for (name, version, schema_url), metrics in by_scope.items()
    ]
    return MetricsData(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=scope_metrics, schema_url="")]
    )


def _sdk_data(
    kind: Kind, points: dict[AttrKey, Value], start_ns: int, now_ns: int, temporality: AggregationTemporality
) -> Sum | Gauge | Histogram:
    if kind is Kind.HISTOGRAM:
        hist_points = [
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=v.count,
                sum=v.sum,
                bucket_counts=v.counts,
                explicit_bounds=v.bounds,
                min=v.min,
                max=v.max,
            )
            for key, v in points.items()
            if isinstance(v, HistogramValue)
        ]
        return Histogram(data_points=hist_points, aggregation_temporality=temporality)
    number_points = [
        NumberDataPoint(attributes=dict(key), start_time_unix_nano=start_ns, time_unix_nano=now_ns, value=v)
        for key, v in points.items()
        if not isinstance(v, HistogramValue)
    ]
    if kind is Kind.GAUGE:
        return Gauge(data_points=number_points)
    return Sum(
        data_points=number_points,
        aggregation_temporality=temporality,
        is_monotonic=kind is Kind.COUNTER,
    )
