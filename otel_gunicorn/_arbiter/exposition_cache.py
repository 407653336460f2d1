"""A cache of the Prometheus exposition, so a scrape redoes only what changed since the previous one.

Runs in the arbiter, on the endpoint's threads, always under the runtime lock (held across every fork).

:class:`ExpositionCache` gives the bytes of the reference pipeline (:mod:`~otel_gunicorn._arbiter.exposition`: the
official exporter's translation, :class:`~otel_gunicorn._arbiter.exposition.OneFamilyPerName`, the encoder the
``Accept`` header chooses) for less, because

* an encoder renders each family on its own: its output is the families' renderings one after another, then a
  trailer (``# EOF`` in OpenMetrics, nothing in the text format);
* the exporter translates each metric on its own into the family of its name, description, unit and type, and a
  family's final name is a function of those; :func:`~otel_gunicorn._arbiter.exposition.fold` folds by final name.
  So the metrics whose family ends up named N (a *group*) make family N entirely, and translating only them, in the
  same relative order, gives the same family N;
* families come out in the order their names first occur over the metrics in ``MetricsData`` order (by scope, in
  the order scopes first occur), ``target_info`` first.

So a scrape groups the metrics of the merged snapshot by final family name, compares each group's members with the
previous scrape's (the same points dict, which the merge store keeps for a metric whose inputs did not change, or
exactly equal points: :func:`~otel_gunicorn._snapshot.fingerprint`), translates only the groups that changed — in
one pass of the official collector — and renders only those, per format; the rest is reused. The arbiter's own
series (heartbeat ages, channel counters...) are measured afresh at every scrape and re-rendered when they moved.
Families that the fold drops are remembered with their group and counted again at every scrape, as the reference
does. Exemplars are part of a metric's :func:`~otel_gunicorn._snapshot.fingerprint`, so a new one re-renders its
group.

Hazards: the points dicts ``produce`` returns are compared by identity, so they must never be modified afterwards
(the merge store's are not); memory stays bounded because groups and names are those of the latest scrape, and at
most :data:`MAX_FORMATS` formats and :data:`MAX_SERIES_LABELS` series labels are kept.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Callable

from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from otel_gunicorn._arbiter.exposition import (
    Drop,
    MergedMetricsReader,
    OneFamilyPerName,
    SeriesLabels,
    add_exemplars,
    fold,
    series_labels,
)
from otel_gunicorn._snapshot import AttrKey, MetricMeta, Snapshot, Value, fingerprint

#: formats (content types) whose renderings are kept; a client asking for yet another one evicts the oldest
MAX_FORMATS = 4
#: gzip level of compressed answers: level 1 costs a fifth of prometheus_client's 9 for a body about 20 % larger
GZIP_LEVEL = 1

Points = dict[AttrKey, Value]
#: series labels remembered by the cache before it starts over (the merged view's series are bounded anyway)
MAX_SERIES_LABELS = 10_000


class _Families:
    """The smallest prometheus_client collector: fixed families."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


@dataclasses.dataclass
class _Group:
    """The metrics whose family ends up with one name, the family, and its renderings."""

    members: list[tuple[MetricMeta, Points]]
    family: Metric
    drops: list[Drop]
    #: rendered family by content type (without the format's trailer)
    rendered: dict[str, bytes] = dataclasses.field(default_factory=dict)
    #: fingerprints of the members' points, by position, computed when first needed
    fingerprints: dict[int, bytes] = dataclasses.field(default_factory=dict)

    def holds(self, members: list[tuple[MetricMeta, Points]]) -> bool:
        """Whether ``members`` are exactly this group's members (and from now on, compare with them)."""
        if len(members) != len(self.members):
            return False
        for index, ((meta, points), (old_meta, old_points)) in enumerate(zip(members, self.members)):
            if points is old_points:
                if meta != old_meta:
                    return False
                continue
            if meta != old_meta or points != old_points:
                return False
            old = self.fingerprints.get(index)
            if old is None:
                old = fingerprint(old_points)
            new = fingerprint(points)
            if new != old:
                return False
            # equal: keep the newer dict, the one the next scrape most likely brings again
            self.members[index] = (meta, points)
            self.fingerprints[index] = new
        return True


class ExpositionCache:
    """The exposition of ``produce()``'s snapshots, rendered as the reference would, reusing what did not change.

    A prometheus_client collector too (:meth:`collect`: the current folded families), for what the fast path does not
    serve. Every method must be called under the runtime lock.

    Args:
        produce: the merged snapshot to expose (merged workers' metrics and the arbiter's own); the points dicts it
            returns must never be modified afterwards (the merge store's are not).
        to_sdk: a snapshot as SDK ``MetricsData`` (resource, start time).
    """

    def __init__(self, produce: Callable[[], Snapshot], to_sdk: Callable[[Snapshot], MetricsData]) -> None:
        self._produce = produce
        self._to_sdk = to_sdk
        self._pending: MetricsData | None = None
        self._staging = CollectorRegistry(auto_describe=False)
        self.reader = MergedMetricsReader(self._take_pending, self._staging)
        #: counts the families dropped for a type conflict (``otel_gunicorn.endpoint.families.dropped``)
        self.families = OneFamilyPerName(self._staging)
        #: the final family name of each metric of the latest scrape
        self._names: dict[MetricMeta, str] = {}
        self._target: str | None = None  # the name of target_info's family
        #: the latest scrape's groups, in exposition order
        self._groups: dict[str, _Group] = {}
        #: trailer by content type, least recently used first
        self._trailers: dict[str, bytes] = {}
        self._gzipped: dict[str, tuple[bytes, bytes]] = {}
        #: what :meth:`_series_of` learnt
        self._series: dict[tuple[MetricMeta, AttrKey], tuple[str, SeriesLabels]] = {}

    # ---------------------------------------------------------------- what a scrape calls

    def render(self, accept: str | None, compress: bool = False) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (as prometheus_client negotiates it): body and content
        type; gzip-compressed when ``compress``."""
        encoder, content_type = choose_encoder(accept or "")
        trailer = self._format(content_type, encoder)
        groups = self._update()
        parts = _parts(groups, content_type, encoder, trailer)
        if parts is None:  # not how encoders work: render everything at once
            body = encoder(_Families([group.family for group in groups]))
        else:
            body = b"".join(parts)
        return (self._compress(content_type, body) if compress else body), content_type

    def collect(self) -> list[Metric]:
        """The current exposition's families, folded (a prometheus_client collector)."""
        return [group.family for group in self._update()]

    # ---------------------------------------------------------------- the work

    def _update(self) -> list[_Group]:
        """Bring the groups up to date with ``produce()`` and count this scrape's dropped families."""
        snapshot = self._produce()
        # the order metrics_data_from_snapshot gives them: by scope, scopes in order of first occurrence
        by_scope: dict[tuple[str, str, str], list[tuple[MetricMeta, Points]]] = {}
        for meta, points in snapshot.items():
            if points:
                by_scope.setdefault((meta.scope_name, meta.scope_version, meta.scope_schema_url), []).append(
                    (meta, points)
                )
        ordered = [member for members in by_scope.values() for member in members]
        target = self._target
        if target is None:
            target = self._target_name()
        old_names = self._names
        names = {}
        members_by_name: dict[str, list[tuple[MetricMeta, Points]]] = {target: []}
        for meta, points in ordered:
            name = old_names.get(meta)
            if name is None:
                name = self._name_of(meta, points)
            names[meta] = name
            members_by_name.setdefault(name, []).append((meta, points))

        old_groups = self._groups
        changed = {
            name
            for name, members in members_by_name.items()
            if (group := old_groups.get(name)) is None or not group.holds(members)
        }
        fresh: dict[str, _Group] = {}
        if changed:
            subset = {meta: points for meta, points in ordered if names[meta] in changed}
            families, drops = fold(self._translate(subset))
            add_exemplars(families, subset, self._series_of)
            by_name = {family.name: family for family in families}
            for name in changed:
                fresh[name] = _Group(
                    members_by_name[name], by_name[name], [drop for drop in drops if drop.name == name]
                )
        groups = {name: fresh.get(name) or old_groups[name] for name in members_by_name}
        self._names, self._groups = names, groups
        for group in groups.values():
            if group.drops:
                self.families.count(group.drops)
        return list(groups.values())

    def _translate(self, snapshot: Snapshot) -> list[Metric]:
        """The exporter's families of ``snapshot`` (``target_info`` first), not folded."""
        self._pending = self._to_sdk(snapshot)
        try:
            return list(self._staging.collect())
        finally:
            self._pending = None

    def _series_of(self, meta: MetricMeta, key: AttrKey, value: Value) -> tuple[str, SeriesLabels]:
        """The family name and series labels the exporter gives this one point (remembered)."""
        found = self._series.get((meta, key))
        if found is None:
            (family,) = [family for family in self._translate({meta: {key: value}}) if family.type != "info"]
            found = family.name, series_labels(family.samples[0].labels)
            if len(self._series) >= MAX_SERIES_LABELS:
                self._series.clear()
            self._series[(meta, key)] = found
        return found

    def _take_pending(self) -> MetricsData:
        pending = self._pending
        return pending if pending is not None else self._to_sdk({})

    def _target_name(self) -> str:
        """The name of ``target_info``'s family, which the exporter yields first at every collection."""
        info = [family for family in self._translate({}) if family.type == "info"]
        self._target = info[0].name
        return self._target

    def _name_of(self, meta: MetricMeta, points: Points) -> str:
        """The final name of the family ``meta`` is translated into (the exporter's naming, run on it alone)."""
        (family,) = [family for family in self._translate({meta: points}) if family.type != "info"]
        return family.name

    def _format(self, content_type: str, encoder: Callable[[Collector], bytes]) -> bytes:
        """The format's trailer; keeps renderings of the :data:`MAX_FORMATS` latest formats only."""
        trailer = self._trailers.pop(content_type, None)
        if trailer is None:
            trailer = encoder(_Families([]))
            while len(self._trailers) >= MAX_FORMATS:
                oldest = next(iter(self._trailers))
                del self._trailers[oldest]
                self._gzipped.pop(oldest, None)
                for group in self._groups.values():
                    group.rendered.pop(oldest, None)
        self._trailers[content_type] = trailer
        return trailer

    def _compress(self, content_type: str, body: bytes) -> bytes:
        last = self._gzipped.get(content_type)
        if last is not None and last[0] == body:
            return last[1]
        compressed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        self._gzipped[content_type] = (body, compressed)
        return compressed


def _parts(
    groups: list[_Group], content_type: str, encoder: Callable[[Collector], bytes], trailer: bytes
) -> list[bytes] | None:
    """Each group's rendering (rendered now if not yet), then the trailer; None if an encoder's rendering of one family
    does not end with the format's trailer."""
    parts = []
    for group in groups:
        part = group.rendered.get(content_type)
        if part is None:
            whole = encoder(_Families([group.family]))
            if not whole.endswith(trailer):
                return None
            part = group.rendered[content_type] = whole[: len(whole) - len(trailer)]
        parts.append(part)
    parts.append(trailer)
    return parts
