"""The Prometheus exposition of the merged view, uncached: what it is, byte for byte.

Runs in the arbiter, on the endpoint's threads, always under the runtime lock (held across every fork).

The merged snapshot becomes SDK ``MetricsData`` (:func:`~otel_gunicorn._snapshot.metrics_data_from_snapshot`), the
official exporter's collector translates it (:class:`MergedMetricsReader` feeds it, so names, units, label
sanitising, ``target_info`` and scope labels are the exporter's), :class:`OneFamilyPerName` folds same-named
families, and the prometheus_client encoder the ``Accept`` header chooses renders the families. The cache in
:mod:`~otel_gunicorn._arbiter.exposition_cache` gives the same bytes for less; what it reuses is built from the
pieces here, and ``tests/unit/test_exposition_cache.py`` holds it to this pipeline.

Hazards:

* the exporter writes two families with one name when two scopes emit the same metric name, which Prometheus rejects
  whole: :func:`fold` joins a later same-named family of the same type to the first, and drops (and counts) one of
  another type, which cannot be represented;
* the official exporter drops the exemplars of the points it translates, so :func:`add_exemplars` puts them back on
  the folded families' samples — a counter's ``_total``, a histogram's ``_bucket`` of the exemplar's bucket —
  finding each series' samples by the labels the exporter gives it (learnt by translating that series alone). Only
  the OpenMetrics encoder writes them; the text format has no place for them and its encoder skips them. An
  exemplar without a trace id (``always_on`` outside a span) has nothing to link to and is left out here (OTLP has
  it).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar as PromExemplar
from prometheus_client.samples import Sample, Timestamp

from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import (
    AttrKey,
    Exemplar,
    HistogramValue,
    Kind,
    MetricMeta,
    Snapshot,
    Value,
    exemplars_of,
)

_log = logging.getLogger("otel_gunicorn")

#: how a series is found among a family's samples: its labels without ``le`` and without empty ones (the exporter
#: fills in ``""`` for labels that only other series of the family have)
SeriesLabels = frozenset[tuple[str, str]]
#: the family name and series labels the exporter gives one point: ``(meta, key, value) -> (name, labels)``
SeriesOf = Callable[[MetricMeta, AttrKey, Value], tuple[str, SeriesLabels]]
_FAMILY_TYPES = {Kind.COUNTER: ("counter", "_total"), Kind.HISTOGRAM: ("histogram", "_bucket")}


def series_labels(labels: dict[str, str]) -> SeriesLabels:
    """A sample's labels as :data:`SeriesLabels`."""
    return frozenset((k, v) for k, v in labels.items() if v != "" and k != "le")


def add_exemplars(families: Iterable[Metric], snapshot: Snapshot, series_of: SeriesOf) -> None:
    """Put the exemplars of ``snapshot``'s points (those with a trace id) on the samples ``families`` — the
    exporter's translation of ``snapshot``, folded — give them, in place."""
    wanted: dict[str, dict[SeriesLabels, tuple[Kind, dict[int, Exemplar]]]] = {}
    for meta, points in snapshot.items():
        found = exemplars_of(points)
        if not found or meta.kind not in _FAMILY_TYPES:
            continue
        for key, exemplars in found.items():
            value = points.get(key)
            linked = [e for e in exemplars if e.trace_id]
            if value is None or not linked:
                continue
            bounds = value.bounds if isinstance(value, HistogramValue) else None
            by_bucket = {0 if bounds is None else bisect_left(bounds, e.value): e for e in linked}
            name, labels = series_of(meta, key, value)
            wanted.setdefault(name, {})[labels] = (meta.kind, by_bucket)
    for family in families:
        table = wanted.get(family.name)
        if table:
            _add_to_family(family, table)


def _add_to_family(family: Metric, table: dict[SeriesLabels, tuple[Kind, dict[int, Exemplar]]]) -> None:
    seen: dict[SeriesLabels, int] = {}
    for index, sample in enumerate(family.samples):
        if not sample.name.endswith(("_total", "_bucket")):
            continue
        labels = series_labels(sample.labels)
        entry = table.get(labels)
        if entry is None:
            continue
        kind, by_bucket = entry
        family_type, suffix = _FAMILY_TYPES[kind]
        if family.type != family_type or sample.name != family.name + suffix:
            continue
        bucket = seen[labels] = seen.get(labels, -1) + 1  # a series' buckets come in order, ``le`` ascending
        exemplar = by_bucket.get(bucket)
        if exemplar is not None:
            family.samples[index] = _with_exemplar(sample, exemplar)


def _with_exemplar(sample: Sample, exemplar: Exemplar) -> Sample:
    # trace_id + span_id: 57 characters of the 128 OpenMetrics allows an exemplar's label set
    labels = {"trace_id": f"{exemplar.trace_id:032x}", "span_id": f"{exemplar.span_id:016x}"}
    seconds, nanos = divmod(exemplar.time_unix_nano, 1_000_000_000)
    return sample._replace(exemplar=PromExemplar(labels, exemplar.value, Timestamp(seconds, nanos)))


class MergedMetricsReader(PrometheusMetricReader):
    """A ``PrometheusMetricReader`` whose collection is the arbiter's merged view rather than a MeterProvider's."""

    def __init__(self, produce: Callable[[], MetricsData], registry: CollectorRegistry) -> None:
        super().__init__(registry=registry)
        self._produce = produce

    # MetricReader.collect is marked @final for typing, but the Python SDK implements no MetricProducer through
    # which foreign (here: merged) data could reach a reader; overriding collect is the one seam that keeps the
    # official exporter's naming and exposition intact.
    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]
        self._receive_metrics(self._produce())


class Drop(NamedTuple):
    """A family :func:`fold` dropped: same name as an earlier family of another type."""

    name: str
    kept: str
    dropped: str


def fold(families: Iterable[Metric]) -> tuple[list[Metric], list[Drop]]:
    """Same-named families folded into the first one: samples of a later family of the same type join it, a later
    family of another type cannot be represented and is dropped."""
    folded: dict[str, Metric] = {}
    drops = []
    for family in families:
        first = folded.get(family.name)
        if first is None:
            folded[family.name] = family
        elif first.type == family.type:
            first.samples.extend(family.samples)
        else:
            drops.append(Drop(family.name, first.type, family.type))
    return list(folded.values()), drops


class OneFamilyPerName:
    """A prometheus_client collector re-emitting ``source``'s families with same-named ones folded into one.

    Samples of a later family with the same name and type join the first; a same-named family of a different type
    cannot be represented and is dropped (counted in :attr:`dropped_families`, at every collection).
    """

    def __init__(self, source: Collector) -> None:
        self._source = source
        self.dropped_families = 0
        self._errors = RateLimitedLogger(_log)

    def collect(self) -> Iterator[Metric]:
        families, drops = fold(self._source.collect())
        self.count(drops)
        return iter(families)

    def count(self, drops: Iterable[Drop]) -> None:
        """Count (and log, rate-limited) families dropped by one collection."""
        for drop in drops:
            self.dropped_families += 1
            self._errors.log(
                logging.WARNING,
                drop.name,
                "otel_gunicorn: metric %s is both a %s and a %s; only the %s is exposed",
                drop.name,
                drop.kept,
                drop.dropped,
                drop.kept,
            )
