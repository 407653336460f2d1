"""Delta temporality for the OTLP push, computed from the arbiter's cumulative snapshots.

Pure functions, used by the exporter process when ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` asks for
``delta`` or ``lowmemory``: counters and histograms are sent as the change since the last *successful* export (so a
failed export loses nothing: the next delta covers both intervals); up-down counters and gauges stay as they are,
as the specification's preference tables say.

Exemplars are samples, not totals: :func:`unsent_exemplars` keeps only those the last successful export did not
carry, whatever the temporality, so each reaches the collector once — as the SDK's own reservoirs, emptied at every
collection, would have it — although the arbiter keeps showing the newest on its Prometheus endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from otel_gunicorn import _environment as env
from otel_gunicorn._snapshot import HistogramValue, Snapshot, Value, exemplars_of, with_exemplars

DELTA_PREFERENCES = frozenset({"delta", "lowmemory"})


def wants_delta(environ: Mapping[str, str]) -> bool:
    """Whether the preference in ``environ`` asks for deltas. In the exporter process, the arbiter has set the
    variable to the value its configuration validated (``Config.metrics_temporality``): a bad value was warned about
    there, once, and is ``cumulative`` here."""
    raw = environ.get(env.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "").strip().lower()
    return raw in DELTA_PREFERENCES


def delta(current: Snapshot, previous: Snapshot) -> Snapshot:
    """Counters and histograms of ``current`` minus ``previous``; other kinds unchanged.

    A point that is new, or smaller than before (the arbiter restarted), is taken whole: it all happened since.
    """
    result: Snapshot = {}
    for meta, points in current.items():
        if not meta.kind.is_total:
            result[meta] = dict(points)
            continue
        before = previous.get(meta, {})
        changes = {key: _minus(value, before.get(key)) for key, value in points.items()}
        result[meta] = with_exemplars(changes, exemplars_of(points))
    return result


def unsent_exemplars(current: Snapshot, previous: Snapshot) -> Snapshot:
    """``current`` with only the exemplars that ``previous`` (the last snapshot exported) did not have."""
    result: Snapshot = {}
    for meta, points in current.items():
        found = exemplars_of(points)
        if found:
            sent = exemplars_of(previous.get(meta, {}))
            unsent = {
                key: tuple(e for e in exemplars if e not in sent.get(key, ())) for key, exemplars in found.items()
            }
            points = with_exemplars(dict(points), unsent)
        result[meta] = points
    return result


def _minus(value: Value, before: Value | None) -> Value:
    if before is None:
        return value
    if isinstance(value, HistogramValue):
        if not isinstance(before, HistogramValue) or before.bounds != value.bounds or before.count > value.count:
            return value
        counts = tuple(a - b for a, b in zip(value.counts, before.counts))
        # min and max of the interval alone are unknowable from cumulative data: the cumulative ones bound them.
        return HistogramValue(
            value.count - before.count, value.sum - before.sum, value.bounds, counts, value.min, value.max
        )
    if isinstance(before, HistogramValue) or value < before:
        return value
    return value - before
