"""A worker's cumulative metrics as plain data: built from SDK ``MetricsData`` in the worker, validated in the arbiter.

The payload is deliberately simple JSON (see :mod:`otel_gunicorn._wire`)::

    {"metrics": [{"scope": [name, version, schema_url], "name": ..., "description": ..., "unit": ...,
                  "kind": "counter" | "updowncounter" | "gauge" | "histogram",
                  "points": [{"a": {attributes}, "v": number}                       # counter, updowncounter, gauge
                             {"a": {...}, "n": count, "s": sum, "b": [bounds], "c": [counts],
                              "lo": min, "hi": max}]}]}                               # histogram

A counter's or histogram's point may add ``"x": [[value, time_unix_nano, trace_id, span_id, {attributes}], ...]``,
its exemplars (:class:`Exemplar`; ids in lower-case hex, 32 and 16 digits, all zeros without a span): a counter at
most one, a histogram at most one per bucket. Exemplars are samples, not totals: a report carries those sampled
since the previous one (or any subset: the arbiter keeps the newest per bucket), and a payload without them is
as valid as ever.

Everything is cumulative since the worker started: a lost report loses nothing but freshness, and the arbiter
can apply the same report twice without counting anything twice.

One piece (~590 lines): one data model and its three forms (SDK data, snapshot, wire payload) with the validation
between them; split, each conversion would sit away from the types and the checks it must agree with.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import marshal
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from opentelemetry.sdk.metrics import Exemplar as SdkExemplar
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

AttrValue = str | bool | int | float | tuple[Any, ...]
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


#: exemplars by metric and series, as a worker's aggregations hand them over (at most one per bucket, newest)
Exemplars = Mapping[MetricMeta, Mapping[AttrKey, tuple[Exemplar, ...]]]

#: at most this many exemplars per counter series (OpenMetrics shows one per ``_total`` sample)
COUNTER_EXEMPLARS = 1
_NO_EXEMPLARS: Mapping[AttrKey, tuple[Exemplar, ...]] = {}


class ExemplarPoints(dict[AttrKey, Value]):
    """A metric's points (a plain points dict in every other respect) with the exemplars sampled for them.

    Exemplars travel *with* the points rather than in a mapping of their own so that every path a snapshot takes —
    the channel, the merge store, the runtime's merged view, the scrape cache, the OTLP payload — carries them
    without a second argument, and so that :func:`fingerprint` (which the merge store and the scrape cache compare)
    sees them. ``==`` ignores them, as it ignores the types that :func:`fingerprint` tells apart. A copy through
    ``dict(points)`` loses them: code building new points from old must pass them on (:func:`exemplars_of`).
    """

    __slots__ = ("exemplars",)

    def __init__(self, points: Mapping[AttrKey, Value], exemplars: Mapping[AttrKey, tuple[Exemplar, ...]]) -> None:
        super().__init__(points)
        #: per series key: its exemplars, at most one per bucket (counters: :data:`COUNTER_EXEMPLARS`), bucket order
        self.exemplars = exemplars


def exemplars_of(points: Mapping[AttrKey, Value]) -> Mapping[AttrKey, tuple[Exemplar, ...]]:
    """The exemplars carried by ``points`` (none for a plain dict)."""
    return points.exemplars if isinstance(points, ExemplarPoints) else _NO_EXEMPLARS


def with_exemplars(
    points: dict[AttrKey, Value], exemplars: Mapping[AttrKey, tuple[Exemplar, ...]]
) -> dict[AttrKey, Value]:
    """``points`` carrying ``exemplars`` (only those of series in ``points``, none empty); ``points`` itself when
    there are none."""
    kept = {key: found for key, found in exemplars.items() if found and key in points}
    return ExemplarPoints(points, kept) if kept else points


def _newer(a: Exemplar, b: Exemplar) -> bool:
    """Whether ``a`` is newer than ``b``; equal times are ordered by ids so that the merge is order-independent."""
    return (a.time_unix_nano, a.trace_id, a.span_id) > (b.time_unix_nano, b.trace_id, b.span_id)


def newest_per_bucket(exemplars: Iterable[Exemplar], bounds: tuple[float, ...] | None) -> tuple[Exemplar, ...]:
    """The newest exemplar of each bucket of ``bounds`` (a histogram's), in bucket order; ``bounds`` None: a
    counter's newest."""
    newest: dict[int, Exemplar] = {}
    for exemplar in exemplars:
        bucket = 0 if bounds is None else bisect_left(bounds, exemplar.value)
        held = newest.get(bucket)
        if held is None or _newer(exemplar, held):
            newest[bucket] = exemplar
    return tuple(newest[bucket] for bucket in sorted(newest))


Snapshot = dict[MetricMeta, dict[AttrKey, Value]]


def attach_exemplars(snapshot: Snapshot, exemplars: Exemplars) -> Snapshot:
    """``snapshot`` (points aggregated outside the SDK) with ``exemplars`` (sampled alongside, e.g. the application's
    synchronous instruments' ``exemplars()``) on its counters' and histograms' points, in place; exemplars of a
    metric or series ``snapshot`` lacks are dropped."""
    for meta, found in exemplars.items():
        points = snapshot.get(meta)
        if points is not None and found and meta.kind.is_total:
            snapshot[meta] = with_exemplars(points, found)
    return snapshot


def keep_exemplars(older: Snapshot, newer: Snapshot) -> Snapshot:
    """``newer`` (a worker's later report, superseding ``older``) also carrying ``older``'s exemplars, newest per
    bucket: a report's exemplars are only those sampled since the one before, so skipping a report must not skip
    them."""
    for meta, points in older.items():
        found = exemplars_of(points)
        later = newer.get(meta)
        if not found or later is None:
            continue
        combined = dict(exemplars_of(later))
        for key, exemplars in found.items():
            value = later.get(key)
            bounds = value.bounds if isinstance(value, HistogramValue) else None
            combined[key] = newest_per_bucket((*exemplars, *combined.get(key, ())), bounds)
        newer[meta] = with_exemplars(dict(later), combined)
    return newer


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
        exact = marshal.dumps((tuple(points), values), 2)
    except ValueError:  # histogram points
        values = tuple(
            (v.count, v.sum, v.bounds, v.counts, v.min, v.max) if isinstance(v, HistogramValue) else v for v in values
        )
        exact = marshal.dumps((tuple(points), values), 2)
    exemplars = exemplars_of(points)
    if exemplars:  # marshal takes no NamedTuple: plain tuples, same fields
        exact += marshal.dumps(tuple((key, tuple(map(tuple, found))) for key, found in exemplars.items()), 2)
    return exact


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
        if not data.is_monotonic:
            return Kind.UPDOWNCOUNTER.value, [{"a": dict(p.attributes or {}), "v": p.value} for p in data.data_points]
        counted: list[dict[str, Any]] = [{"a": dict(p.attributes or {}), "v": p.value} for p in data.data_points]
        for counter_point, p in zip(counted, data.data_points):
            if p.exemplars:
                counter_point["x"] = _encode_sdk_exemplars(p.exemplars, None)
        return Kind.COUNTER.value, counted
    if isinstance(data, Gauge):
        return Kind.GAUGE.value, [{"a": dict(p.attributes or {}), "v": p.value} for p in data.data_points]
    if isinstance(data, Histogram):
        points: list[dict[str, Any]] = []
        for hp in data.data_points:
            point = {
                "a": dict(hp.attributes or {}),
                "n": hp.count,
                "s": hp.sum,
                "b": list(hp.explicit_bounds),
                "c": list(hp.bucket_counts),
                "lo": hp.min,
                "hi": hp.max,
            }
            if hp.exemplars:
                point["x"] = _encode_sdk_exemplars(hp.exemplars, tuple(hp.explicit_bounds))
            points.append(point)
        return Kind.HISTOGRAM.value, points
    return None  # exponential histograms are not merged (documented limitation)


def _encode_sdk_exemplars(exemplars: Iterable[SdkExemplar], bounds: tuple[float, ...] | None) -> list[list[Any]]:
    """The SDK's exemplars of one point (sampled since the previous collection), newest per bucket, as sent."""
    ours = (
        Exemplar(e.value, e.time_unix_nano, e.trace_id or 0, e.span_id or 0, attr_key(e.filtered_attributes))
        for e in exemplars
    )
    return [_encode_exemplar(e) for e in newest_per_bucket(ours, bounds)]


def _encode_exemplar(exemplar: Exemplar) -> list[Any]:
    value, time_unix_nano, trace_id, span_id, attributes = exemplar
    return [
        value,
        time_unix_nano,
        f"{trace_id:032x}",
        f"{span_id:016x}",
        {k: list(v) if isinstance(v, tuple) else v for k, v in attributes},
    ]


def payload_from_snapshot(snapshot: Snapshot) -> dict[str, Any]:
    """The JSON payload of a (merged) snapshot: the inverse of :func:`snapshot_from_payload`."""
    metrics = []
    for meta, points in snapshot.items():
        encoded = []
        exemplars = exemplars_of(points)
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
            if exemplars:
                found = exemplars.get(key)
                if found:
                    encoded[-1]["x"] = [_encode_exemplar(e) for e in found]
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
    sampled: dict[MetricMeta, dict[AttrKey, tuple[Exemplar, ...]]] = {}
    for raw in payload["metrics"]:
        meta = _meta(raw)
        points = snapshot.setdefault(meta, {})
        for raw_point in _field(raw, "points", list):
            if not isinstance(raw_point, dict):
                raise ProtocolError("a point must be an object")
            key = attr_key(_attributes(raw_point.get("a", {})))
            value = points[key] = _histogram(raw_point) if meta.kind is Kind.HISTOGRAM else _number(raw_point, "v")
            raw_exemplars = raw_point.get("x")
            if raw_exemplars is not None:
                sampled.setdefault(meta, {})[key] = _exemplars(raw_exemplars, meta.kind, value)
    for meta, exemplars in sampled.items():
        snapshot[meta] = with_exemplars(snapshot[meta], exemplars)
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


_TRACE_ID = re.compile("[0-9a-f]{32}")
_SPAN_ID = re.compile("[0-9a-f]{16}")
#: OTLP carries an integer exemplar value as a signed 64-bit integer
_INT64 = 1 << 63


def _exemplars(raw: Any, kind: Kind, value: Value) -> tuple[Exemplar, ...]:
    """A point's ``"x"``: at most one exemplar per histogram bucket, or :data:`COUNTER_EXEMPLARS` for a counter."""
    if not kind.is_total:
        raise ProtocolError(f"a {kind.value} carries no exemplars")
    bounds = value.bounds if isinstance(value, HistogramValue) else None
    limit = COUNTER_EXEMPLARS if bounds is None else len(bounds) + 1
    if not isinstance(raw, list) or len(raw) > limit:
        raise ProtocolError(f"exemplars must be a list of at most {limit} for this point")
    exemplars = [_exemplar(item) for item in raw]
    ordered = newest_per_bucket(exemplars, bounds)
    if len(ordered) != len(exemplars):
        raise ProtocolError("more than one exemplar for one bucket")
    return ordered


def _exemplar(raw: Any) -> Exemplar:
    if not isinstance(raw, list) or len(raw) != 5:
        raise ProtocolError("an exemplar must be [value, time_unix_nano, trace_id, span_id, attributes]")
    value, time_unix_nano, trace_id, span_id, attributes = raw
    value = _number({"x": value}, "x")
    if (
        isinstance(value, int)
        and not -_INT64 <= value < _INT64
        or isinstance(value, float)
        and not math.isfinite(value)
    ):
        raise ProtocolError("an exemplar's value must be finite (a 64-bit integer or a float)")
    if not _is_count(time_unix_nano) or time_unix_nano >= 1 << 64:
        raise ProtocolError("an exemplar's time must be a non-negative 64-bit integer")
    if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
        raise ProtocolError("an exemplar's trace id must be 32 lower-case hex digits")
    if not isinstance(span_id, str) or not _SPAN_ID.fullmatch(span_id):
        raise ProtocolError("an exemplar's span id must be 16 lower-case hex digits")
    trace, span = int(trace_id, 16), int(span_id, 16)
    if (trace == 0) != (span == 0):
        raise ProtocolError("an exemplar has both ids or neither")
    return Exemplar(value, time_unix_nano, trace, span, attr_key(_attributes(attributes)))


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
    exemplars = exemplars_of(points)
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
                exemplars=_sdk_exemplars(exemplars.get(key, ())) if exemplars else (),
            )
            for key, v in points.items()
            if isinstance(v, HistogramValue)
        ]
        return Histogram(data_points=hist_points, aggregation_temporality=temporality)
    number_points = [
        NumberDataPoint(
            attributes=dict(key),
            start_time_unix_nano=start_ns,
            time_unix_nano=now_ns,
            value=v,
            exemplars=_sdk_exemplars(exemplars.get(key, ())) if exemplars else (),
        )
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


def _sdk_exemplars(exemplars: tuple[Exemplar, ...]) -> list[SdkExemplar]:
    """Ours as the SDK's (what its exporters encode): ids of 0 — no span — become None, as the SDK leaves them."""
    return [
        SdkExemplar(dict(e.attributes) or None, e.value, e.time_unix_nano, e.span_id or None, e.trace_id or None)
        for e in exemplars
    ]
