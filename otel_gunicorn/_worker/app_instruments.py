"""The application's own synchronous instruments, aggregated in plain Python and reported beside the SDK's collection.

Runs in a worker (HTTP or dirty), on the application's threads: every ``counter.add`` and ``histogram.record`` the
application makes lands here. Through the SDK one measurement costs ~36 k instructions (a frozen ``Measurement``,
attribute cleaning and hashing, four layers each with a lock; bench/request_path_inprocess.py), four times
prometheus_client's multiprocess ``inc()``. Here it costs one lock round trip, one dict lookup keyed by the
attributes as given and a few additions; the cumulative points are built on the reporting thread
(:meth:`AppInstruments.snapshot`), as :mod:`otel_gunicorn._worker.request_stats` does for our own request metrics.

The SDK still does what it does well: every instrument is created in the SDK too, which validates the name and unit,
warns on a duplicate or conflicting registration, parses ``explicit_bucket_boundaries_advisory`` and returns the
same instrument for the same identity. It never gets a measurement (an SDK instrument without one produces no
metric, so nothing is reported twice) except the ones it rejects — a negative or non-finite amount — which are
handed to it so that it warns and drops them in its own words. Observable instruments are the SDK's alone.

Hazards: measurements come from several threads at once (gthread), so each instrument keeps its series under its own
lock, taken with ``acquire``/``release`` (half the cost of ``with``, measured) and never held while logging from a
request thread except on a series' first measurement. A process the application forks inherits the locks in any
state: they are replaced in the child (the process's fork handlers, :mod:`otel_gunicorn._fork`, stage "app
instruments").

The provider and meters that hand the application these instruments are :mod:`otel_gunicorn._worker.app_meter`. This
module stays one piece (~500 lines): the four instruments share one base, one registry and one lock discipline, which
read best next to each other.

``add``, ``record`` and ``set`` repeat the same preamble (the attributes' key, the exemplar check) instead of calling
a shared helper: a Python call costs ~0.5–0.7 k instructions, a sixth of a whole measurement here.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Counter as APICounter
from opentelemetry.metrics import Histogram as APIHistogram
from opentelemetry.metrics import UpDownCounter as APIUpDownCounter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, ExemplarFilter
from opentelemetry.trace import TraceFlags
from opentelemetry.util.types import Attributes

from otel_gunicorn._fork import FORK
from otel_gunicorn._otel_compat import (
    SDK_CARDINALITY_LIMIT,
    SDK_DEFAULT_BOUNDARIES,
    SPAN_KEY,
    APIGauge,
    Measurement,
    context_reader,
)
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import AttrKey, Exemplar, HistogramValue, Kind, MetricMeta, Snapshot, Value, attr_key
from otel_gunicorn._worker.histogram_cell import HistogramCell

_log = logging.getLogger("otel_gunicorn")

_INF = float("inf")
#: the SDK's limit of attribute sets per instrument, and the series that takes every later one
CARDINALITY_LIMIT = SDK_CARDINALITY_LIMIT
OVERFLOW_KEY: AttrKey = (("otel.metric.overflow", True),)
#: the raw key measurements beyond the cardinality limit are counted under (never equal to a tuple of items)
_OVERFLOW_RAW = object()
#: the SDK's default boundaries, read from the SDK rather than copied
DEFAULT_BOUNDARIES = SDK_DEFAULT_BOUNDARIES

_SAMPLED = TraceFlags.SAMPLED
# what the exemplar filter asks of each measurement
_EXEMPLARS_OFF, _EXEMPLARS_TRACE_BASED, _EXEMPLARS_ALWAYS = 0, 1, 2

RawKey = Any  # a tuple of the attributes' items, (), an AttrKey for unhashable values, or _OVERFLOW_RAW
Number = int | float
ExemplarsByMetric = dict[MetricMeta, dict[AttrKey, tuple[Exemplar, ...]]]


#: the current context, as cheaply as the installed API allows
_current_context = context_reader()


def _exemplar_mode(chosen: ExemplarFilter) -> int:
    if isinstance(chosen, AlwaysOffExemplarFilter):
        return _EXEMPLARS_OFF
    if isinstance(chosen, AlwaysOnExemplarFilter):
        return _EXEMPLARS_ALWAYS
    return _EXEMPLARS_TRACE_BASED


def _exemplar(span: Any, value: Number, mode: int) -> Exemplar | None:
    """The exemplar of a measurement made with ``span`` current (``None``: none), or None if the filter refuses it.

    As the SDK's filters: ``trace_based`` keeps measurements made in a sampled span, ``always_on`` all of them (with
    trace and span id 0 outside a valid span). Runs for every measurement inside a span, so it reads attributes and
    tests integers only: no ``isinstance`` against the API's abstract ``Span`` (an ABC check), no flag properties.
    """
    try:
        span_context = span.get_span_context()
    except AttributeError:  # no span (always_on), or something else under the span key
        span_context = None
    if span_context is None or not span_context.is_valid:
        return Exemplar(value, time_ns(), 0, 0) if mode == _EXEMPLARS_ALWAYS else None
    if mode == _EXEMPLARS_TRACE_BASED and not span_context.trace_flags & _SAMPLED:
        return None
    return Exemplar(value, time_ns(), span_context.trace_id, span_context.span_id)


class _FastInstrument:
    """What the four kinds share: the SDK instrument they stand for, the series, the lock and the slow paths.

    ``_series_of`` maps each raw key (the attributes' items as the application passed them: a tuple, which hashes at
    half a frozenset's cost) to the series it counts in: the SDK-cleaned attributes as an :data:`AttrKey`. Several
    raw keys may share a series (the same items in another order, or ``{"a": 1}`` and ``{"a": 1.0}``).
    """

    kind: Kind

    def _init_fast(self, sdk: Any, registry: AppInstruments) -> None:
        self._sdk = sdk
        self._lock = threading.Lock()
        self._series_of: dict[RawKey, AttrKey] = {}
        self._series: set[AttrKey] = set()
        self._exemplars_mode = registry.exemplar_mode
        # newest exemplar by raw key (counters) or by (raw key, bucket) (histograms), since the last report
        self._exemplars: dict[Any, Exemplar] = {}
        scope = sdk.instrumentation_scope
        self.meta = MetricMeta(
            scope.name or "",
            scope.version or "",
            scope.schema_url or "",
            sdk.name,
            sdk.description or "",
            sdk.unit or "",
            self.kind,
        )

    def _key_of_invalid(self, attributes: Any) -> RawKey:
        """The raw key of attributes that are no mapping: none, after the SDK's warning."""
        self._cleaned(attributes)
        return ()

    def _cleaned(self, attributes: Any) -> dict[str, Any]:
        # The SDK's own cleaning, with its warnings: invalid keys dropped, sequences made tuples, and anything but a
        # mapping replaced by no attributes.
        cleaned = Measurement(0, 0, self._sdk, Context(), attributes).attributes
        return dict(cleaned) if cleaned else {}

    def _unhashable(self, attributes: Any) -> RawKey:
        """The raw key of attributes whose items do not hash (a list value): their cleaned form, which does, mapped to
        its series (the caller holds the lock). Cleaned again on every measurement: the SDK's cost, not ours."""
        raw = self._series_key(self._cleaned(attributes))
        return raw if raw in self._series_of else self._new_series(raw, attributes)

    def _series_key(self, cleaned: dict[str, Any]) -> AttrKey:
        series = attr_key(cleaned)
        try:
            hash(series)
        except TypeError:  # a mapping as an attribute value: the channel has no form for it
            _log.warning("otel_gunicorn: %s has a mapping as an attribute value; recorded without", self._sdk.name)
            return ()
        return series

    def _new_series(self, raw: RawKey, attributes: Any) -> RawKey:
        """Map ``raw`` to its series, made if new (the caller holds the lock); the raw key to record under."""
        series = self._series_key(self._cleaned(attributes))
        if series not in self._series:
            if len(self._series) >= CARDINALITY_LIMIT:
                # Not remembered under its raw key: past the limit, the map must not grow with every new key.
                self._series_of[_OVERFLOW_RAW] = OVERFLOW_KEY
                return _OVERFLOW_RAW
            self._series.add(series)
        self._series_of[raw] = series
        return raw

    def _reset_lock(self) -> None:
        self._lock = threading.Lock()

    def take_exemplars(self) -> dict[AttrKey, tuple[Exemplar, ...]]:
        """Exemplars kept since the last call, by series (histograms: ordered by bucket); then forgets them."""
        lock = self._lock
        lock.acquire()
        try:
            kept, self._exemplars = self._exemplars, {}
            series_of = dict(self._series_of)
        finally:
            lock.release()
        newest: dict[tuple[AttrKey, int], Exemplar] = {}
        for where, exemplar in kept.items():
            raw, bucket = where if self.kind is Kind.HISTOGRAM else (where, 0)
            slot = (series_of[raw], bucket)
            if slot not in newest or newest[slot].time_unix_nano <= exemplar.time_unix_nano:
                newest[slot] = exemplar
        by_series: dict[AttrKey, tuple[Exemplar, ...]] = {}
        for slot in sorted(newest, key=lambda slot: slot[1]):  # by bucket
            by_series[slot[0]] = (*by_series.get(slot[0], ()), newest[slot])
        return by_series


class _Sum(_FastInstrument):
    """Counter and up-down counter: per raw key, the sum since the last report and the total before it (kept apart
    because the SDK adds each interval's sum to the total: the same float additions, the same result).

    One ``add`` for both, told apart by the lowest amount accepted: a second method call would cost more than the
    rest of the check."""

    _lowest: Number

    def _init_sum(self, sdk: Any, registry: AppInstruments) -> None:
        self._init_fast(sdk, registry)
        self._interval: dict[RawKey, Number] = {}
        self._totals: dict[RawKey, Number] = {}

    def _add_new(self, raw: RawKey, amount: Number) -> RawKey:
        """Add to a raw key that may have no sum yet (the caller holds the lock)."""
        interval = self._interval
        interval[raw] = interval.get(raw, 0) + amount
        return raw

    def add(self, amount: Number, attributes: Attributes = None, context: Context | None = None) -> None:
        if not self._lowest <= amount < _INF:
            self._sdk.add(amount, attributes, context)
            return
        if attributes:
            try:
                raw: RawKey = tuple(attributes.items())
            except AttributeError:
                raw = self._key_of_invalid(attributes)
        else:
            raw = ()
        exemplar = None
        mode = self._exemplars_mode
        if mode:
            span = (context or _current_context()).get(SPAN_KEY)
            if span is not None or mode == _EXEMPLARS_ALWAYS:
                exemplar = _exemplar(span, amount, mode)
        lock = self._lock
        lock.acquire()
        try:
            try:
                self._interval[raw] += amount
            except KeyError:
                raw = self._add_new(self._new_series(raw, attributes), amount)
            except TypeError:  # an unhashable attribute value, or an amount that does not add (raises again)
                raw = self._add_new(self._unhashable(attributes), amount)
            if exemplar is not None:
                self._exemplars[raw] = exemplar
        finally:
            lock.release()

    def points(self) -> Mapping[AttrKey, Value]:
        """Cumulative sums by series (on the reporting thread)."""
        lock = self._lock
        lock.acquire()
        try:
            totals = self._totals
            interval = self._interval
            for raw, amount in interval.items():
                totals[raw] = totals.get(raw, 0) + amount
                interval[raw] = 0
            points: dict[AttrKey, Number] = {}
            for raw, total in totals.items():
                series = self._series_of[raw]
                points[series] = points[series] + total if series in points else total
            return points
        finally:
            lock.release()


class FastCounter(_Sum, APICounter):
    """A monotonic sum; a negative or non-finite amount goes to the SDK instrument, which warns and drops it."""

    kind = Kind.COUNTER
    _lowest = 0

    def __init__(self, sdk: Any, registry: AppInstruments) -> None:
        self._init_sum(sdk, registry)


class FastUpDownCounter(_Sum, APIUpDownCounter):
    """A sum that may go down; a non-finite amount goes to the SDK instrument, which warns and drops it."""

    kind = Kind.UPDOWNCOUNTER
    _lowest = -sys.float_info.max  # ``lowest <= amount`` refuses only -inf and NaN

    def __init__(self, sdk: Any, registry: AppInstruments) -> None:
        self._init_sum(sdk, registry)


class FastHistogram(_FastInstrument, APIHistogram):
    """Explicit buckets (``bisect_left``: a value equal to a boundary falls in the bucket it closes), sum, min, max;
    a negative or non-finite amount goes to the SDK instrument, which warns and drops it."""

    kind = Kind.HISTOGRAM

    def __init__(self, sdk: Any, registry: AppInstruments, boundaries: tuple[float, ...]) -> None:
        self._init_fast(sdk, registry)
        self.boundaries = boundaries
        self._cells: dict[RawKey, HistogramCell] = {}

    def record(self, amount: Number, attributes: Attributes = None, context: Context | None = None) -> None:
        if not 0 <= amount < _INF:
            self._sdk.record(amount, attributes, context)
            return
        if attributes:
            try:
                raw: RawKey = tuple(attributes.items())
            except AttributeError:
                raw = self._key_of_invalid(attributes)
        else:
            raw = ()
        exemplar = None
        mode = self._exemplars_mode
        if mode:
            span = (context or _current_context()).get(SPAN_KEY)
            if span is not None or mode == _EXEMPLARS_ALWAYS:
                exemplar = _exemplar(span, amount, mode)
        bucket = bisect_left(self.boundaries, amount)
        lock = self._lock
        lock.acquire()
        try:
            try:
                cell = self._cells[raw]
            except KeyError:
                raw, cell = self._cell(self._new_series(raw, attributes))
            except TypeError:  # an unhashable attribute value
                raw, cell = self._cell(self._unhashable(attributes))
            # HistogramCell.record(), inlined: this runs on every measurement
            cell.counts[bucket] += 1
            cell.interval_sum += amount
            if amount < cell.min:
                cell.min = amount
            if amount > cell.max:
                cell.max = amount
            if exemplar is not None:
                self._exemplars[(raw, bucket)] = exemplar
        finally:
            lock.release()

    def _cell(self, raw: RawKey) -> tuple[RawKey, HistogramCell]:
        """The series of a raw key that may have none yet (the caller holds the lock)."""
        cell = self._cells.get(raw)
        if cell is None:
            cell = self._cells[raw] = HistogramCell(len(self.boundaries) + 1)
        return raw, cell

    def points(self) -> Mapping[AttrKey, Value]:
        """Cumulative histogram points by series (on the reporting thread)."""
        lock = self._lock
        lock.acquire()
        try:
            merged: dict[AttrKey, list[Any]] = {}
            for raw, cell in self._cells.items():
                cell.end_interval()
                series = self._series_of[raw]
                if series not in merged:
                    merged[series] = [list(cell.counts), cell.total_sum, cell.min, cell.max]
                    continue
                counts, total, low, high = merged[series]
                merged[series] = [
                    [a + b for a, b in zip(counts, cell.counts)],
                    total + cell.total_sum,
                    min(low, cell.min),
                    max(high, cell.max),
                ]
        finally:
            lock.release()
        return {
            series: HistogramValue(sum(counts), total, self.boundaries, tuple(counts), low, high)
            for series, (counts, total, low, high) in merged.items()
        }


class FastGauge(_FastInstrument, APIGauge):
    """The last value set, per series, kept from one report to the next (the SDK's synchronous gauge under
    cumulative temporality); a non-finite amount goes to the SDK instrument, which warns and drops it."""

    kind = Kind.GAUGE

    def __init__(self, sdk: Any, registry: AppInstruments) -> None:
        self._init_fast(sdk, registry)
        self._values: dict[RawKey, tuple[int, Number]] = {}
        self._sets = 0  # orders the values of raw keys that share a series: the newest wins

    def set(self, amount: Number, attributes: Attributes = None, context: Context | None = None) -> None:
        if not -_INF < amount < _INF:
            self._sdk.set(amount, attributes, context)
            return
        if attributes:
            try:
                raw: RawKey = tuple(attributes.items())
            except AttributeError:
                raw = self._key_of_invalid(attributes)
        else:
            raw = ()
        exemplar = None
        mode = self._exemplars_mode
        if mode:
            span = (context or _current_context()).get(SPAN_KEY)
            if span is not None or mode == _EXEMPLARS_ALWAYS:
                exemplar = _exemplar(span, amount, mode)
        lock = self._lock
        lock.acquire()
        try:
            try:
                if raw not in self._series_of:
                    raw = self._new_series(raw, attributes)
            except TypeError:  # an unhashable attribute value
                raw = self._unhashable(attributes)
            self._sets += 1
            self._values[raw] = (self._sets, amount)
            if exemplar is not None:
                self._exemplars[raw] = exemplar
        finally:
            lock.release()

    def points(self) -> Mapping[AttrKey, Value]:
        """The last value of each series (on the reporting thread)."""
        lock = self._lock
        lock.acquire()
        try:
            newest: dict[AttrKey, tuple[int, Number]] = {}
            for raw, entry in self._values.items():
                series = self._series_of[raw]
                if series not in newest or newest[series][0] < entry[0]:
                    newest[series] = entry
        finally:
            lock.release()
        return {series: value for series, (_order, value) in newest.items()}


FastSynchronous = FastCounter | FastUpDownCounter | FastHistogram | FastGauge


def _fresh_locks_in_child() -> None:
    """In a process the application forked: every instrument's lock replaced (another thread may have held one)."""
    for registry in list(_LIVE):
        registry._reset_locks()


#: every live registry of this process, for the fork handler (weakly: a provider shut down and dropped goes)
_LIVE: weakref.WeakSet[AppInstruments] = weakref.WeakSet()
FORK.join("app instruments", after_in_child=_fresh_locks_in_child)


class AppInstruments:
    """Every fast instrument of one provider, by the SDK instrument each stands for, and their reports."""

    def __init__(self, exemplar_filter: ExemplarFilter) -> None:
        self.exemplar_mode = _exemplar_mode(exemplar_filter)
        self._lock = threading.Lock()
        self._by_sdk: dict[int, tuple[Any, FastSynchronous]] = {}
        self._errors = RateLimitedLogger(_log)
        _LIVE.add(self)

    def fast(self, sdk: Any, make: Callable[[], FastSynchronous]) -> FastSynchronous:
        """The fast instrument standing for ``sdk``, made by ``make`` the first time: the SDK returns the same
        instrument for the same identity, and so does this."""
        with self._lock:
            known = self._by_sdk.get(id(sdk))
            if known is None:
                # the SDK instrument is kept alongside, so its id cannot be reused by another object
                known = self._by_sdk[id(sdk)] = (sdk, make())
            return known[1]

    def _instruments(self) -> list[FastSynchronous]:
        with self._lock:
            return [fast for _sdk, fast in self._by_sdk.values()]

    def _reset_locks(self) -> None:
        self._lock = threading.Lock()
        for fast in self._instruments():
            fast._reset_lock()

    def snapshot(self) -> Snapshot:
        """Cumulative points of every instrument that has had a measurement (on the reporting thread)."""
        snapshot: Snapshot = {}
        for fast in self._instruments():
            try:
                points = fast.points()
            except Exception:  # noqa: BLE001 - one broken instrument must not cost the worker its report
                self._errors.log(logging.WARNING, "points", "otel_gunicorn: %s was not reported", fast.meta.name)
                continue
            if points:
                # two SDK instruments differing only in their advisory have one identity here: merged, as the
                # arbiter would merge their points
                snapshot.setdefault(fast.meta, {}).update(points)
        return snapshot

    def exemplars(self) -> ExemplarsByMetric:
        """Exemplars kept since the last call, by metric and series; each report takes them once, as the SDK's
        reservoirs are emptied by each collection (the arbiter keeps the newest)."""
        taken: ExemplarsByMetric = {}
        for fast in self._instruments():
            by_series = fast.take_exemplars()
            if by_series:
                taken.setdefault(fast.meta, {}).update(by_series)
        return taken
