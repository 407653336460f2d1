"""The cached scrape path (otel_gunicorn._arbiter.exposition_cache): the same bytes as the uncached reference.

The reference (otel_gunicorn._arbiter.exposition) is the pipeline the endpoint ran before the cache: the merged
snapshot as SDK MetricsData, the official exporter's collector (through MergedMetricsReader), OneFamilyPerName, and
prometheus_client's own WSGI application.
"""

from __future__ import annotations

import gzip
import io
import math
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder

from otel_gunicorn._arbiter import exposition_cache
from otel_gunicorn._arbiter.exposition import (
    MergedMetricsReader,
    OneFamilyPerName,
    SeriesLabels,
    add_exemplars,
    series_labels,
)
from otel_gunicorn._arbiter.exposition_cache import ExpositionCache
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._arbiter.prometheus import PrometheusEndpoint
from otel_gunicorn._fork import ForkLock
from otel_gunicorn._snapshot import (
    AttrKey,
    Exemplar,
    HistogramValue,
    Kind,
    MetricMeta,
    Snapshot,
    Value,
    attr_key,
    exemplars_of,
    metrics_data_from_snapshot,
    newest_per_bucket,
    with_exemplars,
)

RESOURCE = Resource.create({"service.name": "tests", "host.name": "h"})
START_NS = 1_700_000_000_000_000_000
ACCEPTS = (
    None,
    "text/plain",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=2.0.0",
    # what Prometheus 3 sends
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
)
fast = settings(max_examples=100, deadline=None)


def to_sdk(snapshot: Snapshot) -> Any:
    return metrics_data_from_snapshot(snapshot, RESOURCE, START_NS, START_NS + 1)


def reference_series_of(meta: MetricMeta, key: AttrKey, value: Value) -> tuple[str, SeriesLabels]:
    """The family name and series labels of one point, from a fresh official pipeline (nothing remembered)."""
    staging = CollectorRegistry(auto_describe=False)
    MergedMetricsReader(lambda: to_sdk({meta: {key: value}}), staging)
    (family,) = [family for family in staging.collect() if family.type != "info"]
    return family.name, series_labels(family.samples[0].labels)


class WithExemplars:
    """The folded families with the snapshot's exemplars put back (what the exporter leaves out)."""

    def __init__(self, families: OneFamilyPerName, snapshot: Callable[[], Snapshot]) -> None:
        self._families = families
        self._snapshot = snapshot

    def collect(self) -> list[Any]:
        families = list(self._families.collect())
        add_exemplars(families, self._snapshot(), reference_series_of)
        return families


class Reference:
    """The uncached path: a fresh official pipeline for every scrape (as the endpoint had before the cache), with
    exemplars put back on its families."""

    def __init__(self) -> None:
        self.snapshot: Snapshot = {}
        staging = CollectorRegistry(auto_describe=False)
        self.reader = MergedMetricsReader(lambda: to_sdk(self.snapshot), staging)
        self.families = OneFamilyPerName(staging)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(WithExemplars(self.families, lambda: self.snapshot))  # type: ignore[arg-type]
        self.app = make_wsgi_app(self.registry)

    def render(self, snapshot: Snapshot, accept: str | None) -> tuple[bytes, str, int]:
        """Body, content type and families dropped by this scrape."""
        self.snapshot = snapshot
        before = self.families.dropped_families
        encoder, content_type = choose_encoder(accept or "")
        body = encoder(self.registry)
        return body, content_type, self.families.dropped_families - before


def outcome(render: Callable[[], tuple[bytes, str, int]]) -> tuple[Any, ...]:
    """What a scrape gives, or the type of exception it raises (both paths must fail alike, if ever)."""
    try:
        return render()
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return ("raised", type(exc))


class Cached:
    """The cache under test, fed one snapshot after another."""

    def __init__(self) -> None:
        self.snapshot: Snapshot = {}
        self.cache = ExpositionCache(lambda: dict(self.snapshot), to_sdk)

    def render(self, snapshot: Snapshot, accept: str | None) -> tuple[bytes, str, int]:
        self.snapshot = snapshot
        before = self.cache.families.dropped_families
        body, content_type = self.cache.render(accept)
        return body, content_type, self.cache.families.dropped_families - before


# ---------------------------------------------------------------- random merged snapshots

SCOPES = (("app", "", ""), ("app", "2.0", ""), ("other", "1", "https://opentelemetry.io/schemas/1.26.0"))
# names chosen to collide: after sanitising, after a counter's _total is stripped, after the unit is appended, and
# with target_info
NAMES = ("requests", "requests.total", "requests_total", "requests_seconds", "target", "target.info", "1st", "a.b")
UNITS = ("", "s", "ms", "{request}", "1", "By/s")
DESCRIPTIONS = ("", "Requests served.", 'multi\nline "doc" \\')
BOUNDS = ((), (1.0,), (0.5, 1.0, 10.0))
LABEL_NAMES = ("method", "http.method", "http_method", "1a", "é")
LABEL_VALUES = (
    st.sampled_from(("GET", "POST", 'quote " and \\ and \n', "ü", ""))
    | st.sampled_from((0, 1, -1, 1.0, 0.0, -0.0, True, False, 2.5))
    | st.tuples(st.sampled_from(("a", "b")), st.integers(0, 2))
)
NUMBERS = st.integers(-5, 10**20) | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from((0, 0.0, -0.0))


def in_scope(scope: tuple[str, str, str], name: str, description: str, unit: str, kind: Kind) -> MetricMeta:
    return MetricMeta(*scope, name, description, unit, kind)


metas = st.builds(
    in_scope,
    st.sampled_from(SCOPES),
    st.sampled_from(NAMES),
    st.sampled_from(DESCRIPTIONS),
    st.sampled_from(UNITS),
    st.sampled_from(list(Kind)),
)
keys = st.dictionaries(st.sampled_from(LABEL_NAMES), LABEL_VALUES, max_size=3).map(attr_key)


@st.composite
def histograms(draw: st.DrawFn) -> HistogramValue:
    bounds = draw(st.sampled_from(BOUNDS))
    counts = tuple(draw(st.lists(st.integers(0, 5), min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
    low, high = sorted(draw(st.lists(st.floats(-10, 10), min_size=2, max_size=2)))
    return HistogramValue(sum(counts), draw(NUMBERS), bounds, counts, low, high)


# exemplars: values around the bucket boundaries, in the same few nanoseconds (ties), with and without a trace, with
# and without filtered attributes
exemplars = st.builds(
    Exemplar,
    st.sampled_from((0, 0.25, 0.5, 1, 1.0, 5.0, 100.0, -0.0)),
    st.integers(1_700_000_000_000_000_000, 1_700_000_000_000_000_003),
    st.sampled_from((0, 1, 0x0AF7651916CD43DD8448EB211C80319C)),
    st.sampled_from((1, 0xB7AD6B7169203331)),
    st.dictionaries(st.sampled_from(("a", "b.c")), st.sampled_from(("x", 1, 2.5, True))).map(
        lambda d: tuple(sorted(d.items()))
    ),
).map(lambda e: e._replace(span_id=0) if e.trace_id == 0 else e)


@st.composite
def sampled(draw: st.DrawFn, kind: Kind, points: dict[AttrKey, Value]) -> dict[AttrKey, Value]:
    """``points`` with exemplars on some series (counters and histograms only), or without any."""
    if kind not in (Kind.COUNTER, Kind.HISTOGRAM) or not points or draw(st.booleans()):
        return points
    found = {}
    for key, value in points.items():
        bounds = value.bounds if isinstance(value, HistogramValue) else None
        found[key] = newest_per_bucket(draw(st.lists(exemplars, max_size=3)), bounds)
    return with_exemplars(dict(points), found)


def points_of(kind: Kind) -> st.SearchStrategy[dict[AttrKey, Value]]:
    values: st.SearchStrategy[Any] = histograms() if kind is Kind.HISTOGRAM else NUMBERS
    return st.dictionaries(keys, values, max_size=4).flatmap(lambda points: sampled(kind, points))


def retyped(points: dict[AttrKey, Value]) -> dict[AttrKey, Value]:
    """The same points by ``==``, in other types where one exists (1 and True and 1.0, 0.0 and -0.0)."""

    def other(value: Any) -> Any:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, float) and value == 0:
            return -value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    return {tuple((k, other(v)) for k, v in key): other(value) for key, value in points.items()}


@st.composite
def snapshot_sequences(draw: st.DrawFn) -> list[Snapshot]:
    """Merged snapshots one scrape after another: points kept (the very same dict, as the merge store keeps them),
    copied, retyped, changed or dropped; new metrics; metrics in a new order."""
    sequence: list[Snapshot] = []
    snapshot: Snapshot = {}
    for _ in range(draw(st.integers(1, 5))):
        following: Snapshot = {}
        for meta, points in snapshot.items():
            action = draw(st.sampled_from(("keep", "keep", "keep", "copy", "retype", "change", "resample", "drop")))
            if action == "keep":
                following[meta] = points
            elif action == "resample":  # equal points, other exemplars (or the same ones in a new dict)
                following[meta] = draw(sampled(meta.kind, dict(points)))
            elif action == "copy":
                following[meta] = dict(points)
            elif action == "retype":
                following[meta] = retyped(points)
            elif action == "change":
                following[meta] = draw(points_of(meta.kind))
        for meta in draw(st.lists(metas, max_size=4)):
            following.setdefault(meta, draw(points_of(meta.kind)))
        if draw(st.booleans()):
            order = draw(st.permutations(list(following)))
            following = {meta: following[meta] for meta in order}
        sequence.append(following)
        snapshot = following
    return sequence


@fast
@given(sequence=snapshot_sequences(), data=st.data())
def test_cached_scrapes_are_the_reference_bytes(sequence: list[Snapshot], data: st.DataObject) -> None:
    """Scrape after scrape, in any format, the cached exposition is byte for byte the reference's, and both count the
    same dropped families."""
    reference, cached = Reference(), Cached()
    for snapshot in sequence:
        for accept in data.draw(st.lists(st.sampled_from(ACCEPTS), min_size=1, max_size=3)):
            expected = outcome(lambda s=snapshot, a=accept: reference.render(s, a))  # type: ignore[misc]
            assert expected == outcome(lambda s=snapshot, a=accept: cached.render(s, a))  # type: ignore[misc]


# ---------------------------------------------------------------- the merge store behind it

COUNTER = MetricMeta("app", "", "", "requests", "Requests.", "{request}", Kind.COUNTER)
ACTIVE = MetricMeta("app", "", "", "active", "", "{request}", Kind.UPDOWNCOUNTER)
THREADS = MetricMeta("app", "", "", "threads", "", "{thread}", Kind.GAUGE)
DURATION = MetricMeta("app", "", "", "duration", "", "s", Kind.HISTOGRAM)
OTHER_SCOPE_COUNTER = MetricMeta("lib", "1", "", "requests", "Requests.", "{request}", Kind.COUNTER)
CONFLICTING_GAUGE = MetricMeta("lib", "1", "", "requests", "", "{request}", Kind.GAUGE)


@st.composite
def worker_snapshots(draw: st.DrawFn) -> Snapshot:
    method = st.sampled_from(((("method", "GET"),), (("method", "POST"),), ()))
    snapshot: Snapshot = {}
    for meta in draw(st.lists(st.sampled_from([COUNTER, ACTIVE, THREADS, OTHER_SCOPE_COUNTER, CONFLICTING_GAUGE]))):
        snapshot[meta] = draw(st.dictionaries(method, st.integers(0, 3) | st.sampled_from((0.5, True)), max_size=2))
    if draw(st.booleans()):
        snapshot[DURATION] = {(): HistogramValue(1, 0.25, (1.0,), (1, 0), 0.25, 0.25)}
    for meta in (COUNTER, DURATION):  # exemplars sampled since the worker's previous report, or none
        if meta in snapshot:
            snapshot[meta] = draw(sampled(meta.kind, snapshot[meta]))
    return snapshot


operations = st.lists(
    st.tuples(st.sampled_from(("report", "report", "report", "drop_gauges", "retire")), st.integers(1, 4)),
    min_size=1,
    max_size=25,
)


@fast
@given(steps=operations, data=st.data())
def test_cached_scrapes_of_a_merge_store_are_the_reference_bytes(
    steps: list[tuple[str, int]], data: st.DataObject
) -> None:
    """Workers report (the same snapshot again, or new ones), die and retire; a scrape after each step gives the
    reference's bytes."""
    store = MergeStore()
    reference, cached = Reference(), Cached()
    last: dict[int, Snapshot] = {}
    for operation, pid in steps:
        if operation == "report":
            snapshot = last[pid] if pid in last and data.draw(st.booleans()) else data.draw(worker_snapshots())
            # equal, never the same objects
            last[pid] = {meta: with_exemplars(dict(points), exemplars_of(points)) for meta, points in snapshot.items()}
            store.report(pid, pid - 1, snapshot)
        elif operation == "drop_gauges":
            store.drop_gauges(pid)
        else:
            store.retire(pid)
            last.pop(pid, None)
        merged = store.merged()
        accept = data.draw(st.sampled_from(ACCEPTS))
        assert reference.render(merged, accept) == cached.render(merged, accept)


# ---------------------------------------------------------------- what is reused


class CountingReader:
    """Counts the exporter translations and the metrics translated."""

    def __init__(self, cache: ExpositionCache, monkeypatch: pytest.MonkeyPatch) -> None:
        self.metrics: list[str] = []
        translate = cache._translate

        def counting(snapshot: Snapshot) -> Any:
            self.metrics.extend(meta.name for meta in snapshot)
            return translate(snapshot)

        monkeypatch.setattr(cache, "_translate", counting)


def test_unchanged_metrics_are_neither_translated_nor_rendered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second scrape of the same points translates nothing; one changed metric is the only one translated."""
    unchanged: dict[AttrKey, Value] = {(("method", "GET"),): 3}
    cached = Cached()
    cached.render({COUNTER: unchanged, THREADS: {(): 1}}, None)
    counting = CountingReader(cached.cache, monkeypatch)

    cached.render({COUNTER: unchanged, THREADS: {(): 1}}, None)
    cached.render({COUNTER: unchanged, THREADS: {(): 2}}, None)

    assert ["threads"] == counting.metrics


def test_equal_points_in_a_new_dict_are_reused_but_retyped_ones_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points equal to the previous scrape's in a new dict are reused; 1 becoming True (rendered "true") is not."""
    cached = Cached()
    cached.render({COUNTER: {(("flag", 1),): 3}}, None)
    counting = CountingReader(cached.cache, monkeypatch)

    cached.render({COUNTER: {(("flag", 1),): 3}}, None)
    body, _, _ = cached.render({COUNTER: {(("flag", True),): 3}}, None)

    assert (["requests"], True) == (counting.metrics, b'flag="true"' in body)


def test_type_conflict_is_dropped_and_counted_at_every_scrape() -> None:
    """A counter and a gauge whose families are both named requests: the gauge is dropped, and counted again at each
    scrape even when nothing is translated again."""
    snapshot: Snapshot = {COUNTER: {(): 1}, CONFLICTING_GAUGE: {(): 2}}
    cached = Cached()

    drops = [cached.render(snapshot, None)[2] for _ in range(3)]

    assert ([1, 1, 1], 3) == (drops, cached.cache.families.dropped_families)


def test_same_named_families_of_two_scopes_are_one_family() -> None:
    """Our counter and a library's of the same name are folded into one family with both scopes' samples."""
    body, _, _ = Cached().render({COUNTER: {(): 1}, OTHER_SCOPE_COUNTER: {(): 2}}, None)

    assert (1, 2) == (body.count(b"# TYPE requests_total counter"), body.count(b"\nrequests_total{"))


def test_target_info_comes_first_even_with_no_metrics() -> None:
    """An empty snapshot still exposes target_info, as the exporter does."""
    body, _, _ = Cached().render({}, None)

    assert body.startswith(b"# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{")


def test_formats_beyond_the_limit_evict_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The latest MAX_FORMATS formats are served again without running an encoder; one more evicts the least recently
    used, which is then rendered again, identically to the reference."""
    choose = choose_encoder
    encoded: list[str] = []  # the content type of every encoder run

    def counting(accept: str) -> tuple[Callable[[Any], bytes], str]:
        encoder, content_type = choose(accept)

        def encode(registry: Any) -> bytes:
            encoded.append(content_type)
            return encoder(registry)

        return encode, content_type

    monkeypatch.setattr("otel_gunicorn._arbiter.exposition_cache.choose_encoder", counting)
    by_type = {choose(accept or "")[1]: accept for accept in ACCEPTS}  # one Accept header per content type
    accepts = list(by_type.values())[: exposition_cache.MAX_FORMATS + 1]
    assert exposition_cache.MAX_FORMATS + 1 == len(accepts), "ACCEPTS has too few content types for this test"
    cached, reference = Cached(), Reference()
    snapshot: Snapshot = {COUNTER: {(): 1}}
    for accept in accepts[1:]:
        cached.render(snapshot, accept)

    encoded.clear()
    kept = [cached.render(snapshot, accept) for accept in accepts[1:]]
    encoded_for_kept = list(encoded)
    evicting = cached.render(snapshot, accepts[0])  # a fifth format: evicts accepts[1], the least recently used
    encoded.clear()
    evicted = cached.render(snapshot, accepts[1])

    assert ([], {list(by_type)[1]}) == (encoded_for_kept, set(encoded))
    assert [reference.render(snapshot, accept) for accept in accepts] == [evicting, evicted, *kept[1:]]


def test_compressed_body_is_reused_while_the_body_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """gzip runs once for a body scraped twice; the answer decompresses to the body."""
    compressions = []
    compress = gzip.compress

    def counting(data: bytes, **settings: Any) -> bytes:
        compressions.append(data)
        return compress(data, **settings)

    monkeypatch.setattr(gzip, "compress", counting)  # the module exposition_cache compresses with
    cache = ExpositionCache(lambda: {COUNTER: {(): 1}}, to_sdk)

    first, _ = cache.render(None, compress=True)
    second, _ = cache.render(None, compress=True)
    plain, _ = cache.render(None)

    assert (1, first, plain) == (len(compressions), second, gzip.decompress(first))


# ---------------------------------------------------------------- the endpoint's WSGI application


def call(app: Callable[..., Any], method: str = "GET", path: str = "/metrics", **headers: str) -> tuple[Any, ...]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": headers.pop("query", ""),
        "wsgi.input": io.BytesIO(),
        "wsgi.url_scheme": "http",
    }
    environ.update({f"HTTP_{name.upper()}": value for name, value in headers.items()})
    answer: list[Any] = []
    body = b"".join(
        app(environ, lambda status, response_headers, exc_info=None: answer.extend([status, response_headers]))
    )
    if ("Content-Encoding", "gzip") in answer[1]:
        body = gzip.decompress(body)
    return answer[0], answer[1], body


@pytest.fixture
def endpoint() -> Iterator[tuple[PrometheusEndpoint, Reference]]:
    reference = Reference()
    snapshot: Snapshot = {
        COUNTER: {(("method", "GET"),): 3},
        DURATION: {(): HistogramValue(1, 0.5, (1.0,), (1, 0), 0.5, 0.5)},
    }
    reference.snapshot = snapshot
    yield PrometheusEndpoint("localhost", 0, lambda: dict(snapshot), to_sdk, ForkLock()), reference


@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"accept": ACCEPTS[-1]},
        {"accept": "application/openmetrics-text", "accept_encoding": "gzip, deflate"},
        {"accept_encoding": "br;q=1.0, GZIP;q=0.5"},
        {"query": "name[]=requests_total"},
        {"method": "OPTIONS"},
        {"method": "POST"},
        {"method": "HEAD"},
        {"path": "/favicon.ico"},
        {"path": "/anything"},
    ],
    ids=lambda r: ",".join(f"{k}={v[:20]}" for k, v in r.items()) or "plain",
)
def test_endpoint_answers_as_prometheus_client_does(
    endpoint: tuple[PrometheusEndpoint, Reference], request_: dict[str, str]
) -> None:
    """Status, headers and (decompressed) body of the endpoint's application equal prometheus_client's make_wsgi_app
    on the reference pipeline, for the cached path and for what it hands over."""
    served, reference = endpoint

    assert call(reference.app, **request_) == call(served.app, **request_)


class WitnessLock(ForkLock):
    """The runtime lock, also telling which threads are inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.holders: list[int] = []

    def __enter__(self) -> ForkLock:
        entered = super().__enter__()
        self.holders.append(threading.get_ident())
        return entered

    def __exit__(self, *exc_info: Any) -> None:
        self.holders.remove(threading.get_ident())
        super().__exit__(*exc_info)


def test_scrape_computes_under_the_runtime_lock() -> None:
    """produce() runs with the endpoint's lock held by the scraping thread (the lock held across fork)."""
    lock = WitnessLock()
    held = []

    def produce() -> Snapshot:
        held.append(threading.get_ident() in lock.holders)
        return {COUNTER: {(): 1}}

    served = PrometheusEndpoint("localhost", 0, produce, to_sdk, lock)
    status, _, body = call(served.app)

    assert ("200 OK", [True], []) == (status, held, lock.holders)
    assert b"\nrequests_total{" in body


# ---------------------------------------------------------------- the runtime's self-metrics


def test_self_metrics_in_the_scrape_are_up_to_date(tmp_path: Any) -> None:
    """Through the runtime: the dropped-families counter a scrape exposes counts the scrapes before it, and the
    channel's report counter moves between two scrapes although no worker metric changed."""
    from otel_gunicorn._arbiter.runtime import ArbiterRuntime
    from otel_gunicorn._config import Config

    server = types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1)
    config = Config(metrics_exporters=frozenset({"prometheus"}), channel_dir=str(tmp_path), prometheus_port=0)
    runtime = ArbiterRuntime(config, server)
    try:
        runtime.store.report(1, 0, {COUNTER: {(): 1}, CONFLICTING_GAUGE: {(): 2}})
        assert runtime.endpoint is not None
        bodies = []
        for _ in range(3):
            runtime.channel.stats.reports_received += 1
            bodies.append(call(runtime.endpoint.app)[2].decode())
    finally:
        runtime.channel.stop()

    def value(body: str, name: str, label: str = "") -> float:
        (line,) = [line for line in body.splitlines() if line.startswith(name + "{") and label in line]
        return float(line.rsplit(" ", 1)[1])

    dropped = [value(b, "otel_gunicorn_endpoint_families_dropped_total") for b in bodies]
    reports = [value(b, "otel_gunicorn_channel_reports_total", 'outcome="accepted"') for b in bodies]
    assert ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0]) == (dropped, reports)


def test_nan_values_render_like_the_reference() -> None:
    """NaN is never == NaN: the cache re-renders it (or not) but the bytes stay the reference's."""
    reference, cached = Reference(), Cached()
    snapshot: Snapshot = {THREADS: {(): math.nan}}

    for _ in range(2):
        assert reference.render(snapshot, None) == cached.render(snapshot, None)
