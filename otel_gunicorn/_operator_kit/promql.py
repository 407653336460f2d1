"""The PromQL the dashboard and the rules share: series and label names from the catalogue, and the signals.

Used by the operator-kit generators (:mod:`.rules`, :mod:`.dashboard`: a developer's shell, ``make docs``) and by
``tests/e2e/test_promql.py``, which runs every expression against a real Prometheus; never inside gunicorn.

Names are computed from :mod:`otel_gunicorn._instruments` when this module is imported, through the official
OTel→Prometheus mapping: a test that renames an instrument reloads this module, then the modules that import it.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE

from otel_gunicorn import _instruments as catalogue
from otel_gunicorn._otel_compat import sanitize_attribute

prometheus_name = catalogue.prometheus_name


def label(instrument: catalogue.Instrument, attribute: str) -> str:
    """The Prometheus label of one of ``instrument``'s attributes (an attribute it does not have is a bug here)."""
    if attribute not in instrument.attributes:
        raise ValueError(f"{instrument.name} has no attribute {attribute!r}: {instrument.attributes}")
    return sanitize_attribute(attribute)


QUEUED = prometheus_name(catalogue.LISTENER_QUEUED)
BACKLOG = prometheus_name(catalogue.LISTENER_LIMIT)
WORKERS = prometheus_name(catalogue.WORKER_COUNT)
WORKER_LIMIT = prometheus_name(catalogue.WORKER_LIMIT)
EXITS = prometheus_name(catalogue.WORKER_EXITS)
HEARTBEAT = prometheus_name(catalogue.HEARTBEAT_AGE)
CONNECTIONS = prometheus_name(catalogue.ACTIVE_CONNECTIONS)
CONNECTION_LIMIT = prometheus_name(catalogue.CONNECTION_LIMIT)
THREADS = prometheus_name(catalogue.THREADS)
THREAD_LIMIT = prometheus_name(catalogue.THREAD_LIMIT)
THREAD_QUEUE = prometheus_name(catalogue.THREAD_QUEUE)
IN_FLIGHT = prometheus_name(catalogue.ACTIVE_REQUESTS)
DURATION = prometheus_name(catalogue.REQUEST_DURATION)
QUEUE_TIME = prometheus_name(catalogue.QUEUE_DURATION)
CAPACITY = prometheus_name(catalogue.SERVER_CAPACITY)
MEMORY = prometheus_name(catalogue.PROCESS_MEMORY_USAGE)
CPU_TIME = prometheus_name(catalogue.PROCESS_CPU_TIME)
PROCESS_THREADS = prometheus_name(catalogue.PROCESS_THREADS)
DESCRIPTORS = prometheus_name(catalogue.PROCESS_DESCRIPTORS)
GC_COLLECTIONS = prometheus_name(catalogue.GC_COLLECTIONS)
GC_PAUSE = prometheus_name(catalogue.GC_PAUSE)
SLOW_REQUESTS = prometheus_name(catalogue.SLOW_REQUESTS)

#: the label the official exporter gives every series for its instrumentation scope
SCOPE = "otel_scope_name"
#: our families whose semantic-convention names other instrumentations record too — Flask's, Django's and FastAPI's
#: own telemetry land in the same family under their scope, and summing the family would count each request twice;
#: OpenTelemetry's system-metrics instrumentation records process and CPython GC metrics of the same names (without
#: our slot): every selector of them is narrowed to our scope
SHARED_FAMILIES = (DURATION, IN_FLIGHT, MEMORY, CPU_TIME, PROCESS_THREADS, DESCRIPTORS, GC_COLLECTIONS)

LISTENER = label(catalogue.LISTENER_QUEUED, catalogue.LISTENER_ATTRIBUTE)
WORKER_STATE = label(catalogue.WORKER_COUNT, "gunicorn.worker.state")
THREAD_STATE = label(catalogue.THREADS, "gunicorn.thread.state")
REASON = label(catalogue.WORKER_EXITS, "gunicorn.worker.exit.reason")
SLOT = label(catalogue.HEARTBEAT_AGE, catalogue.SLOT_ATTRIBUTE)
STATUS = label(catalogue.REQUEST_DURATION, HTTP_RESPONSE_STATUS_CODE)
ERROR = label(catalogue.REQUEST_DURATION, ERROR_TYPE)
ROUTE = label(catalogue.REQUEST_DURATION, HTTP_ROUTE)
GC_GENERATION = label(catalogue.GC_PAUSE, catalogue.GC_GENERATION_ATTRIBUTE)
#: a process series of a worker (the arbiter's own have no slot: the exporter writes the label empty)
OF_A_WORKER = f'{SLOT}!=""'
OF_THE_ARBITER = f'{SLOT}=""'

# ---------------------------------------------------------------------------------------------------- PromQL builders
# ``where`` is a list of label matchers every selector gets (the dashboard's $job/$instance, none in the rules),
# ``by`` the labels an aggregation keeps, ``window`` the range of rate() and friends.


def eq(name: str, value: str) -> str:
    return f'{name}="{value}"'


def match(name: str, regex: str) -> str:
    return f'{name}=~"{regex}"'


def series(metric: str, where: Sequence[str] = (), *matchers: str) -> str:
    """``metric{matchers...}``: one selector (of our scope only, for a family others share)."""
    ours = [eq(SCOPE, catalogue.SCOPE_NAME)] if metric.startswith(SHARED_FAMILIES) else []
    found = [*where, *ours, *matchers]
    return f"{metric}{{{', '.join(found)}}}" if found else metric


def aggregate(operator: str, by: Sequence[str], expr: str) -> str:
    return f"{operator} by ({', '.join(by)}) ({expr})" if by else f"{operator}({expr})"


def request_rate(by: Sequence[str], where: Sequence[str], window: str) -> str:
    """Requests completed per second (every request lands in the duration histogram once)."""
    return aggregate("sum", by, f"rate({series(DURATION + '_count', where)}[{window}])")


def slow_request_rate(by: Sequence[str], where: Sequence[str], window: str) -> str:
    """Requests per second that took at least ``OTEL_GUNICORN_SLOW_REQUEST_SECONDS`` (absent unless it is set)."""
    return aggregate("sum", by, f"rate({series(SLOW_REQUESTS, where)}[{window}])")


def error_ratio(by: Sequence[str], where: Sequence[str], window: str) -> str:
    """Share of requests that failed (``error.type`` set: every 5xx, requests cut off by a ``--timeout`` abort or
    an exception); 0, not nothing, while there is traffic but no failure series yet."""
    total = request_rate(by, where, window)
    failed = series(DURATION + "_count", where, f'{ERROR}!=""')
    errors = aggregate("sum", by, f"rate({failed}[{window}])")
    return f"({errors} or {total} * 0) / {total}"


def quantile(q: float, family: str, by: Sequence[str], where: Sequence[str], window: str) -> str:
    """The ``q`` quantile of a histogram family over ``window``, estimated from its buckets."""
    buckets = aggregate("sum", ["le", *by], f"rate({series(family + '_bucket', where)}[{window}])")
    return f"histogram_quantile({q}, {buckets})"


def capacity_share(by: Sequence[str], where: Sequence[str], window: str) -> str:
    """Per route, the share of the capacity its requests take: seconds spent serving them per second (the requests
    of that route running at once, on average) over ``gunicorn.server.capacity`` (the requests the server can run
    at once). ``by`` must hold the labels that tell servers apart (the capacity is matched on them)."""
    busy = aggregate("sum", [*by, ROUTE], f"rate({series(DURATION + '_sum', where)}[{window}])")
    capacity = aggregate("sum", by, series(CAPACITY, where))
    return f"{busy} / on ({', '.join(by)}) group_left () {capacity}"


def busy_worker_ratio(by: Sequence[str], where: Sequence[str]) -> str:
    """Busy workers over the configured worker count."""
    busy = aggregate("sum", by, series(WORKERS, where, eq(WORKER_STATE, "busy")))
    return f"{busy} / {aggregate('sum', by, series(WORKER_LIMIT, where))}"


def busy_thread_ratio(by: Sequence[str], where: Sequence[str]) -> str:
    """Busy request threads over the configured threads (gthread)."""
    busy = aggregate("sum", by, series(THREADS, where, eq(THREAD_STATE, "busy")))
    return f"{busy} / {aggregate('sum', by, series(THREAD_LIMIT, where))}"


def listener_fill(by: Sequence[str], where: Sequence[str]) -> str:
    """The fullest accept queue's share of its limit (queue and limit carry the same labels, so they pair 1:1)."""
    return aggregate("max", by, f"{series(QUEUED, where)} / {series(BACKLOG, where)}")


def exits(
    by: Sequence[str], where: Sequence[str], window: str, reasons: str | None = None, function: str = "increase"
) -> str:
    """Worker exits (their reason matching the regex ``reasons``) in ``window``; ``function="rate"``: per second."""
    selected = series(EXITS, where, *([match(REASON, reasons)] if reasons else []))
    return aggregate("sum", by, f"{function}({selected}[{window}])")


def memory_growth(by: Sequence[str], where: Sequence[str], window: str) -> str:
    """Per worker slot, the share of its resident memory it gains per hour, from the trend over ``window`` (the
    slope of a least-squares line: steady growth, not a spike). ``by`` must hold the slot."""
    memory = series(MEMORY, where, OF_A_WORKER)
    slope = aggregate("max", by, f"deriv({memory}[{window}])")
    return f"{slope} * 3600 / {aggregate('max', by, memory)}"


def cpu_cores(by: Sequence[str], where: Sequence[str], window: str, *matchers: str) -> str:
    """CPU seconds used per second (1 = one core busy), both modes together."""
    return aggregate("sum", by, f"rate({series(CPU_TIME, where, *matchers)}[{window}])")
