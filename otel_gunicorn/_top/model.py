"""One scrape of an otel_gunicorn endpoint as a pure model: a row per worker slot, a row per listener, totals.

Runs in the operator's terminal (``otel-gunicorn top``), never in gunicorn. :func:`parse` takes the exposition
text and does no I/O, so captured scrapes under ``tests/fixtures/top/`` test it. Only series of the instrumentation
scope ``otel_gunicorn`` are read: an application may record a metric with the same name under its own scope (the
contrib WSGI instrumentation records ``http.server.request.duration`` too), and counting it would double the rate.
A metric the endpoint does not show stays ``None`` here and "—" on screen, never 0: worker classes measure
different things (see docs/metrics.md).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from otel_gunicorn._instruments import SCOPE_NAME
from otel_gunicorn._top.errors import NOT_OTEL_GUNICORN, TopError

# Prometheus names of the metrics the view reads; tests/unit/test_top.py checks each against _instruments.py.
ACTIVE_REQUESTS = "http_server_active_requests"
ACTIVE_CONNECTIONS = "gunicorn_worker_active_connections"
CONNECTION_LIMIT = "gunicorn_worker_connection_limit"
THREADS = "gunicorn_thread_pool_threads"
THREAD_LIMIT = "gunicorn_thread_pool_thread_limit"
POOL_QUEUE = "gunicorn_thread_pool_queue_length"
HEARTBEAT_AGE = "gunicorn_worker_heartbeat_age_seconds"
LISTENER_QUEUED = "gunicorn_listener_queued_connections"
LISTENER_LIMIT = "gunicorn_listener_backlog_limit"
WORKERS = "gunicorn_workers"
WORKER_LIMIT = "gunicorn_worker_limit"
EXITS = "gunicorn_worker_exits_total"
DURATION = "http_server_request_duration_seconds"
REPORTS = "otel_gunicorn_channel_reports_total"
CAPACITY = "gunicorn_server_capacity"
MEMORY = "process_memory_usage_bytes"
CPU_TIME = "process_cpu_time_seconds_total"
PROCESS_READS = "otel_gunicorn_process_reads_total"

# Prometheus label names (the exporter turns the attributes' dots into underscores)
SCOPE_LABEL = "otel_scope_name"
SLOT = "gunicorn_worker_slot"
LISTENER = "gunicorn_listener"
TRANSPORT = "network_transport"
THREAD_STATE = "gunicorn_thread_state"
WORKER_STATE = "gunicorn_worker_state"
EXIT_REASON = "gunicorn_worker_exit_reason"
OUTCOME = "outcome"
ROUTE = "http_route"
ERROR_TYPE = "error_type"

#: the families that carry one series per worker slot and make a row of the worker table (the process families'
#: series with an empty slot are the arbiter's own)
PER_SLOT = (
    ACTIVE_REQUESTS,
    ACTIVE_CONNECTIONS,
    CONNECTION_LIMIT,
    THREADS,
    THREAD_LIMIT,
    POOL_QUEUE,
    HEARTBEAT_AGE,
    MEMORY,
    CPU_TIME,
)

Labels = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class SlotRow:
    """One worker slot as the endpoint shows it; ``None`` where the worker class does not measure it."""

    slot: str
    in_flight: float | None
    connections: float | None
    connection_limit: float | None
    threads_busy: float | None
    thread_limit: float | None
    pool_queue: float | None
    heartbeat_age: float | None
    #: resident memory of the worker holding the slot, in bytes
    memory: float | None = None
    #: CPU seconds the slot's workers used, both modes, since the arbiter started (a counter: for a rate)
    cpu_seconds: float | None = None

    @property
    def busy(self) -> bool | None:
        """Serving at least one request; ``None`` when the worker class has no request metrics."""
        return None if self.in_flight is None else self.in_flight > 0


@dataclasses.dataclass(frozen=True)
class ListenerRow:
    """One listener's accept queue; ``slot`` is set under ``reuse_port``, where each worker has its own."""

    listener: str
    transport: str
    slot: str | None
    queued: float | None
    limit: float | None


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts by upper bound, the last bound ``inf``; summed over every label set."""

    bounds: tuple[float, ...]
    cumulative: tuple[float, ...]

    @property
    def count(self) -> float:
        return self.cumulative[-1] if self.cumulative else 0.0


@dataclasses.dataclass(frozen=True)
class RouteSeries:
    """One ``http_route``'s requests (``""``: no route matched), summed over its other labels."""

    duration: Histogram
    #: seconds spent serving them (the histogram's ``_sum``)
    seconds: float
    #: those that failed (``error_type`` set)
    errors: float


@dataclasses.dataclass(frozen=True)
class Scrape:
    """Everything ``top`` shows from one exposition."""

    slots: tuple[SlotRow, ...]
    listeners: tuple[ListenerRow, ...]
    workers_busy: float | None
    worker_limit: float | None
    duration: Histogram | None
    exits: Mapping[str, float] | None
    #: worker reports the arbiter accepted since it started: each one may move every counter and histogram
    reports: float | None = None
    #: route -> its requests; empty without request metrics
    routes: Mapping[str, RouteSeries] = dataclasses.field(default_factory=dict)
    #: gunicorn.server.capacity: the requests the server can run at once
    capacity: float | None = None
    #: the arbiter's /proc reads so far: they move at every round of reads (every report interval), like ``reports``
    process_reads: float | None = None
    #: the arbiter's own resident memory, in bytes
    arbiter_memory: float | None = None


class Series:
    """The samples of scope ``otel_gunicorn`` in one exposition, by sample name."""

    def __init__(self, samples: Iterable[tuple[str, Labels, float]]) -> None:
        self._by_name: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
        for name, labels, value in samples:
            self._by_name[name].append((labels, value))

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def of(self, name: str, **match: str) -> list[tuple[Labels, float]]:
        """Every ``(labels, value)`` of ``name`` whose labels include ``match``."""
        return [(labels, v) for labels, v in self._by_name.get(name, []) if _matches(labels, match)]

    def total(self, name: str, **match: str) -> float | None:
        """Sum of the matching samples; ``None`` when there is none (absent, not 0)."""
        found = self.of(name, **match)
        return sum(v for _, v in found) if found else None

    def by(self, name: str, label: str, **match: str) -> dict[str, float] | None:
        """The matching samples summed per value of ``label``; ``None`` when there is none."""
        found = self.of(name, **match)
        if not found:
            return None
        sums: dict[str, float] = defaultdict(float)
        for labels, value in found:
            sums[labels.get(label, "")] += value
        return dict(sums)


def _matches(labels: Labels, match: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in match.items())


def read_series(text: str) -> Series:
    """The ``otel_gunicorn`` series of an exposition; TopError when it is none, or not an exposition at all."""
    try:
        samples = [
            (s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
        ]
    except ValueError as exc:  # the parser's one error for text that is not the exposition format
        first_line = (str(exc).splitlines() or [""])[0][:80]  # the parser quotes the offending line: keep it short
        raise TopError(NOT_OTEL_GUNICORN, f"not a Prometheus exposition ({first_line})") from None
    ours = [s for s in samples if s[1].get(SCOPE_LABEL) == SCOPE_NAME]
    if not ours:
        raise TopError(NOT_OTEL_GUNICORN, f'no series with {SCOPE_LABEL}="{SCOPE_NAME}"')
    return Series(ours)


def parse(text: str) -> Scrape:
    """The model of one exposition (pure); TopError when it is not an otel_gunicorn endpoint's."""
    series = read_series(text)
    return Scrape(
        slots=slot_rows(series),
        listeners=listener_rows(series),
        workers_busy=series.total(WORKERS, **{WORKER_STATE: "busy"}),
        worker_limit=series.total(WORKER_LIMIT),
        duration=histogram(series, DURATION),
        exits=series.by(EXITS, EXIT_REASON),
        reports=series.total(REPORTS, **{OUTCOME: "accepted"}),
        routes=route_series(series),
        capacity=series.total(CAPACITY),
        process_reads=series.total(PROCESS_READS),
        arbiter_memory=arbiter_memory(series),
    )


def arbiter_memory(series: Series) -> float | None:
    """The arbiter's resident memory: the memory series without a slot (the exporter writes the label empty once a
    worker's series has it); None when absent."""
    found = [value for labels, value in series.of(MEMORY) if not labels.get(SLOT)]
    return sum(found) if found else None


def slot_rows(series: Series) -> tuple[SlotRow, ...]:
    """One row per ``gunicorn_worker_slot`` seen in any per-slot family, in slot order."""
    slots = {labels[SLOT] for name in PER_SLOT for labels, _ in series.of(name) if labels.get(SLOT)}

    # A worker's in-flight series appears with its first request: where the endpoint has the family at all (the
    # worker class has request metrics), a slot without a series has served nothing yet and has 0 in flight.
    no_request_yet = 0.0 if ACTIVE_REQUESTS in series else None

    def row(slot: str) -> SlotRow:
        of_slot = {SLOT: slot}
        in_flight = series.total(ACTIVE_REQUESTS, **of_slot)
        return SlotRow(
            slot=slot,
            in_flight=no_request_yet if in_flight is None else in_flight,
            connections=series.total(ACTIVE_CONNECTIONS, **of_slot),
            connection_limit=series.total(CONNECTION_LIMIT, **of_slot),
            threads_busy=series.total(THREADS, **of_slot, **{THREAD_STATE: "busy"}),
            thread_limit=series.total(THREAD_LIMIT, **of_slot),
            pool_queue=series.total(POOL_QUEUE, **of_slot),
            heartbeat_age=series.total(HEARTBEAT_AGE, **of_slot),
            memory=series.total(MEMORY, **of_slot),
            cpu_seconds=series.total(CPU_TIME, **of_slot),
        )

    return tuple(row(slot) for slot in sorted(slots, key=_slot_order))


def _slot_order(slot: str) -> tuple[int, str]:
    # slots are small integers; a label that is not one still sorts, after them
    return (int(slot), "") if slot.isdigit() else (1 << 30, slot)


def listener_rows(series: Series) -> tuple[ListenerRow, ...]:
    """One row per listener (and slot, under reuse_port), from the queue and limit families."""
    # keyed exactly, slot included: a series without a slot must not absorb the per-worker ones of its listener
    rows: dict[tuple[str, str, str | None], dict[str, float]] = defaultdict(dict)
    for name in (LISTENER_QUEUED, LISTENER_LIMIT):
        for labels, value in series.of(name):
            values = rows[(labels.get(LISTENER, "?"), labels.get(TRANSPORT, "?"), labels.get(SLOT))]
            values[name] = values.get(name, 0.0) + value
    ordered = sorted(rows.items(), key=lambda item: (*item[0][:2], _slot_order(item[0][2] or "")))
    return tuple(ListenerRow(*key, values.get(LISTENER_QUEUED), values.get(LISTENER_LIMIT)) for key, values in ordered)


def histogram(series: Series, name: str) -> Histogram | None:
    """The ``name`` histogram summed over all its label sets, by bucket bound; ``None`` when absent."""
    buckets = series.by(f"{name}_bucket", "le")
    if not buckets:
        return None
    bounds = sorted(buckets, key=float)  # "+Inf" parses as inf, so it sorts last
    return Histogram(tuple(float(b) for b in bounds), tuple(buckets[b] for b in bounds))


def route_series(series: Series) -> dict[str, RouteSeries]:
    """The request-duration histogram, its sum and its failed requests per ``http_route``."""
    buckets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in series.of(f"{DURATION}_bucket"):
        buckets[labels.get(ROUTE, "")][labels.get("le", "+Inf")] += value
    seconds: dict[str, float] = defaultdict(float)
    for labels, value in series.of(f"{DURATION}_sum"):
        seconds[labels.get(ROUTE, "")] += value
    errors: dict[str, float] = defaultdict(float)
    for labels, value in series.of(f"{DURATION}_count"):
        if labels.get(ERROR_TYPE):
            errors[labels.get(ROUTE, "")] += value
    routes = {}
    for route, by_bound in buckets.items():
        bounds = sorted(by_bound, key=float)
        duration = Histogram(tuple(float(b) for b in bounds), tuple(by_bound[b] for b in bounds))
        routes[route] = RouteSeries(duration, seconds[route], errors[route])
    return routes
