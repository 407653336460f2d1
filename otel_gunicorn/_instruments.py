"""Every instrument otel_gunicorn records itself: name, unit, kind, attributes and what it means to an operator.

Names follow the semantic conventions where one exists, otherwise the ``gunicorn.*`` namespace, with one rule:
gauges are never named ``*.count`` (``gunicorn.workers``, ``gunicorn.thread_pool.threads``) because the
OTel→Prometheus mapping keeps the name, and Prometheus reserves the ``_count`` suffix for histogram and summary
series — ``promtool check metrics`` rejects a gauge called ``gunicorn_worker_count``. Two semantic-convention names
break it (``process.thread.count``, ``process.unix.file_descriptor.count``): they keep their names in OTLP and get
another at the Prometheus endpoint (:attr:`Instrument.prometheus_base`, :func:`for_prometheus`).

One table for both process sides: the worker builds its SDK instruments from it, the arbiter builds its merged
points from it, and ``docs/metrics.md`` is generated from it (a test fails when they disagree).

One piece (~680 lines, most of them the table itself): a catalogue read in one place is the point of having one.
"""

from __future__ import annotations

import dataclasses

from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION, NETWORK_TRANSPORT
from opentelemetry.semconv.attributes.url_attributes import URL_SCHEME
from opentelemetry.semconv.metrics.http_metrics import HTTP_SERVER_REQUEST_DURATION

from otel_gunicorn._otel_compat import map_unit, sanitize_full_name
from otel_gunicorn._snapshot import Kind, MetricMeta, Snapshot
from otel_gunicorn._version import __version__

SCOPE_NAME = "otel_gunicorn"

#: the attribute that tells per-worker series apart: a small integer the arbiter assigns and reuses
SLOT_ATTRIBUTE = "gunicorn.worker.slot"
#: gunicorn's own string for a listener: ``http://127.0.0.1:8000``, ``unix:/run/app.sock``
LISTENER_ATTRIBUTE = "gunicorn.listener"

#: semantic-convention bucket boundaries for HTTP durations (seconds)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

ALL_CLASSES = "all"
#: request metrics come from gunicorn's request hooks, or, for the classes that never call them, from a wrapper
#: around the application; what that wrapper cannot wrap is named
REQUEST_CLASSES = (
    "all (gevent_pywsgi, tornado, uvicorn-worker: measured around the application, which must be WSGI for tornado "
    "— not a tornado.web.Application — and ASGI 3 for uvicorn-worker)"
)


@dataclasses.dataclass(frozen=True)
class Instrument:
    """One row of the metric reference."""

    name: str
    unit: str
    kind: Kind
    description: str
    attributes: tuple[str, ...]
    measured_in: str
    worker_classes: str
    meaning: str
    #: the name the Prometheus endpoint maps instead of :attr:`name`, for a semantic-convention name the official
    #: mapping would turn into one Prometheus reserves (a gauge ending in ``_count``); empty: :attr:`name`
    prometheus_base: str = ""

    @property
    def meta(self) -> MetricMeta:
        return MetricMeta(SCOPE_NAME, __version__, "", self.name, self.description, self.unit, self.kind)


def prometheus_name(instrument: Instrument) -> str:
    """The name the official OTel→Prometheus mapping gives ``instrument`` (histograms: the family name).

    Uses the exporter's own mapping functions, so docs, dashboard, rules and ``otel-gunicorn top`` name every metric
    exactly as the endpoint does (of :attr:`Instrument.prometheus_base` where one is set: :func:`for_prometheus`).
    """
    name = sanitize_full_name(instrument.prometheus_base or instrument.name)
    unit = map_unit(instrument.unit)
    if unit and not name.endswith(unit):
        name += "_" + unit
    if instrument.kind is Kind.COUNTER:
        name += "_total"
    return name


LISTENER_ATTRS = (LISTENER_ATTRIBUTE, NETWORK_TRANSPORT)

LISTENER_QUEUED = Instrument(
    "gunicorn.listener.queued_connections",
    "{connection}",
    Kind.GAUGE,
    "Connections the kernel has completed but no worker has accepted yet.",
    LISTENER_ATTRS,
    "arbiter (each worker under reuse_port, with its slot)",
    "all (Linux; TCP, TCP6, unix sockets)",
    "The queue in front of the server. Sustained non-zero means workers are saturated: scale out or add workers. "
    "gthread and asyncio workers accept eagerly, so for them look at the thread pool queue instead.",
)
LISTENER_LIMIT = Instrument(
    "gunicorn.listener.backlog.limit",
    "{connection}",
    Kind.GAUGE,
    "Effective accept-queue limit of the listener: min(backlog, net.core.somaxconn).",
    LISTENER_ATTRS,
    "arbiter (each worker under reuse_port, with its slot)",
    "all (Linux; TCP, TCP6, unix sockets)",
    "When queued connections reach this, new connections are dropped or refused by the kernel.",
)
WORKER_COUNT = Instrument(
    "gunicorn.workers",
    "{worker}",
    Kind.GAUGE,
    "Live workers, by whether they are serving at least one request (as of their latest report).",
    ("gunicorn.worker.state",),
    "arbiter",
    REQUEST_CLASSES,
    "busy == limit for long means every worker is occupied: requests queue up. A server that has served nothing "
    "yet: all idle.",
)
WORKER_LIMIT = Instrument(
    "gunicorn.worker.limit",
    "{worker}",
    Kind.GAUGE,
    "Configured number of workers (follows TTIN/TTOU).",
    (),
    "arbiter",
    ALL_CLASSES,
    "Compare with gunicorn.workers.",
)
WORKER_EXITS = Instrument(
    "gunicorn.worker.exits",
    "{worker}",
    Kind.COUNTER,
    "Workers that exited, by reason: timeout (aborted by the arbiter), killed (a signal the arbiter did not send, "
    "e.g. the OOM killer), error (exited through an exception or a non-zero status), normal.",
    ("gunicorn.worker.exit.reason",),
    "arbiter",
    ALL_CLASSES,
    "Alert on any rate of timeout or killed: requests were cut off.",
)
HEARTBEAT_AGE = Instrument(
    "gunicorn.worker.heartbeat.age",
    "s",
    Kind.GAUGE,
    "Seconds since the worker last notified the arbiter it is alive.",
    (SLOT_ATTRIBUTE,),
    "arbiter",
    ALL_CLASSES,
    "Approaching --timeout means the worker is stuck and about to be aborted.",
)
ACTIVE_CONNECTIONS = Instrument(
    "gunicorn.worker.active_connections",
    "{connection}",
    Kind.GAUGE,
    "Connections the worker holds open (being served, kept alive or waiting for a thread).",
    (SLOT_ATTRIBUTE,),
    "worker",
    "gthread, asgi, tornado, uvicorn-worker (while its server serves)",
    "Close to the connection limit means the worker stops accepting and connections queue in the kernel. "
    "An HTTP/2 connection counts once however many streams (requests) it carries: requests in flight are "
    "http.server.active_requests. gthread serves one connection's streams one after another in one thread, "
    "asgi all at once.",
)
CONNECTION_LIMIT = Instrument(
    "gunicorn.worker.connection.limit",
    "{connection}",
    Kind.GAUGE,
    "Most connections the worker will hold at once (--worker-connections, per listener for gevent).",
    (SLOT_ATTRIBUTE,),
    "worker",
    "gthread, gevent, uvicorn-worker (limit_concurrency)",
    "The ceiling for gunicorn.worker.active_connections.",
)
THREADS = Instrument(
    "gunicorn.thread_pool.threads",
    "{thread}",
    Kind.GAUGE,
    "Request threads of the worker, by whether they are running a request.",
    (SLOT_ATTRIBUTE, "gunicorn.thread.state"),
    "worker",
    "gthread",
    "busy == limit means accepted work now waits in the thread pool queue.",
)
THREAD_LIMIT = Instrument(
    "gunicorn.thread_pool.thread.limit",
    "{thread}",
    Kind.GAUGE,
    "Configured request threads per worker (--threads).",
    (SLOT_ATTRIBUTE,),
    "worker",
    "gthread",
    "Ceiling for busy threads.",
)
THREAD_QUEUE = Instrument(
    "gunicorn.thread_pool.queue.length",
    "{request}",
    Kind.GAUGE,
    "Accepted connections with a request waiting for a free thread.",
    (SLOT_ATTRIBUTE,),
    "worker",
    "gthread",
    "gthread's real queue: the kernel backlog stays near 0 because gthread accepts eagerly. Non-zero: add threads "
    "or workers.",
)
CONCURRENCY = Instrument(
    "gunicorn.worker.concurrency",
    "{request}",
    Kind.GAUGE,
    "Requests the worker served at once, on average over the last report interval (time-weighted: a request in "
    "flight for half of the interval counts one half).",
    (SLOT_ATTRIBUTE,),
    "worker",
    REQUEST_CLASSES,
    "With sync workers the share of the interval the worker was busy (at most 1); with gthread, threads running a "
    "request on average. Unlike http.server.active_requests, not a sample taken at the report: the input of "
    "gunicorn.server.utilization for sync and gthread (docs/utilization.md).",
)
LOOP_CLASSES = (
    "gevent, gevent_pywsgi (gevent's default libev loop), asgi, tornado, uvicorn-worker (asyncio's own loop; "
    "not uvloop)"
)
LOOP_UTILIZATION = Instrument(
    "gunicorn.worker.loop.utilization",
    "1",
    Kind.GAUGE,
    "Share of the last report interval the worker's event loop spent running code (request handlers, callbacks, "
    "greenlets) rather than waiting for I/O.",
    (SLOT_ATTRIBUTE,),
    "worker",
    LOOP_CLASSES,
    "Near 1: the loop has no idle time left, and requests on this worker wait for the CPU ahead of them. "
    "The input of gunicorn.server.utilization for event-loop workers (docs/utilization.md).",
)
SERVER_UTILIZATION = Instrument(
    "gunicorn.server.utilization",
    "1",
    Kind.GAUGE,
    "How full the server is: work running plus work waiting, over what it can run at once "
    "(gunicorn.server.capacity). 0 = idle, 1 = no more work can start without waiting; above 1 when work waits "
    "in the listener queue or a thread pool queue (sync, gthread).",
    (),
    "arbiter",
    "sync, gthread, " + LOOP_CLASSES,
    "The signal to autoscale on (docs/autoscaling.md). sync: (busy workers + listener queue) / live workers; "
    "gthread: (threads running a request + thread pool queues + listener queue) / request threads; event-loop "
    "classes: sum of gunicorn.worker.loop.utilization / live workers, at most 1. Busy workers, threads and loops "
    "are averages over the last report interval (gunicorn.worker.concurrency, gunicorn.worker.loop.utilization), "
    "the queues their length at the latest report or probe (docs/utilization.md).",
)
SERVER_CAPACITY = Instrument(
    "gunicorn.server.capacity",
    "{request}",
    Kind.GAUGE,
    "What gunicorn.server.utilization divides by: live workers (sync), their request threads (gthread), or live "
    "workers each with one event loop (event-loop classes); a worker counts once it has reported.",
    (),
    "arbiter",
    "sync, gthread, " + LOOP_CLASSES,
    "utilization × capacity is the work running and waiting, in requests (event loops: in fully busy loops); "
    "weight by it to aggregate servers of different sizes.",
)
ACTIVE_REQUESTS = Instrument(
    # opt-in and still incubating in the semantic conventions, so no stable constant exists for it
    "http.server.active_requests",
    "{request}",
    Kind.UPDOWNCOUNTER,
    "Requests being served right now.",
    (SLOT_ATTRIBUTE, HTTP_REQUEST_METHOD),
    "worker",
    REQUEST_CLASSES,
    "In-flight work; with sync workers at most 1 per worker.",
)
REQUEST_DURATION = Instrument(
    HTTP_SERVER_REQUEST_DURATION,
    "s",
    Kind.HISTOGRAM,
    "Time from the start of a request until its response was complete, streamed bodies included. A failed "
    "request carries error.type: its status code for a 5xx, timeout for a request cut off by a --timeout abort, "
    "or the class of the exception that cut it off (the status is then the one the client got, usually the 500 "
    "of gunicorn's error page). http.route is the framework's route template (Flask's url_rule, Django's "
    "resolver_match.route, Starlette's and FastAPI's route path with its mount and router prefixes, or the "
    "otel_gunicorn.route environ/scope key), absent when no route matched (a 404); at most "
    "OTEL_GUNICORN_MAX_ROUTES distinct routes per server, the others recorded as _OTHER.",
    (HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, URL_SCHEME, NETWORK_PROTOCOL_VERSION, ERROR_TYPE),
    "worker",
    REQUEST_CLASSES,
    'Latency SLOs; the error ratio counts series with error_type!="" (every 5xx, timeouts, exceptions); by '
    "http_route: which route is slow, failing, or takes the workers' time.",
)
SLOW_REQUESTS = Instrument(
    "gunicorn.requests.slow",
    "{request}",
    Kind.COUNTER,
    "Requests that took at least OTEL_GUNICORN_SLOW_REQUEST_SECONDS, every one, counted when they end, with the "
    "attributes of their http.server.request.duration point (those still running at a check were logged with their "
    "stack while they ran). Absent unless the variable is set.",
    REQUEST_DURATION.attributes,
    "worker (at each request's end)",
    REQUEST_CLASSES,
    "Divided by the rate of http.server.request.duration's count with the same attributes: the share of a route's "
    "requests that are slow. Each one has a log line naming the code it was running (docs/troubleshooting.md).",
)
QUEUE_DURATION = Instrument(
    "gunicorn.request.queue.duration",
    "s",
    Kind.HISTOGRAM,
    "Time a request waited between the front proxy (X-Request-Start / X-Queue-Start header) and the worker.",
    (),
    "worker",
    REQUEST_CLASSES + "; only requests carrying the header",
    "Queueing in front of gunicorn that the server's own latency does not show.",
)
QUEUE_HEADER_INVALID = Instrument(
    "otel_gunicorn.request.queue_header.invalid",
    "{request}",
    Kind.COUNTER,
    "Requests whose X-Request-Start / X-Queue-Start header was malformed, in the future or absurdly old (ignored).",
    (),
    "worker",
    REQUEST_CLASSES,
    "A rising rate means the proxy's header format or clock is off.",
)
#: the attribute that names a request's route template
ROUTE_ATTRIBUTE = HTTP_ROUTE
#: the value routes past ``OTEL_GUNICORN_MAX_ROUTES`` fold into (a worker's, and the server's bound)
OVERFLOW_ROUTE = "_OTHER"
ROUTES_OVERFLOW = Instrument(
    "otel_gunicorn.http.route.overflow",
    "{request}",
    Kind.COUNTER,
    "Requests recorded with http.route=_OTHER because their worker, or the server, had already seen "
    "OTEL_GUNICORN_MAX_ROUTES distinct routes.",
    (),
    "worker",
    REQUEST_CLASSES,
    "Above zero: the application has more routes than the bound (raise it), or its routes are not templates.",
)
# ---------------------------------------------------------------- dirty workers (gunicorn >= 25 with dirty_apps)

#: tells dirty workers' series apart as gunicorn.worker.slot does HTTP workers': a small integer the arbiter assigns
#: and reuses; its own name, so a dirty worker's gauge never lands on an HTTP worker's series
DIRTY_SLOT_ATTRIBUTE = "gunicorn.dirty.worker.slot"
#: the dirty app's import path as the HTTP worker named it (``module:Class``)
DIRTY_APP_ATTRIBUTE = "gunicorn.dirty.app"
DIRTY_ACTION_ATTRIBUTE = "gunicorn.dirty.action"
#: dirty calls are the heavy work (model inference, rendering), up to dirty_timeout (300 s by default)
DIRTY_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DIRTY_CLASSES = "all, with dirty_apps (gunicorn >= 25); absent otherwise"

DIRTY_WORKER_COUNT = Instrument(
    "gunicorn.dirty.workers",
    "{worker}",
    Kind.GAUGE,
    "Live dirty workers, by whether they are running a call (as of their latest report; a dirty worker counts "
    "from its first report on).",
    ("gunicorn.dirty.worker.state",),
    "arbiter (from the dirty workers' reports)",
    DIRTY_CLASSES,
    "busy == gunicorn.dirty.worker.limit for long means every dirty worker is occupied: calls wait in the dirty "
    "arbiter, and the HTTP workers that made them wait too.",
)
DIRTY_WORKER_LIMIT = Instrument(
    "gunicorn.dirty.worker.limit",
    "{worker}",
    Kind.GAUGE,
    "Dirty workers the dirty arbiter keeps running (dirty_workers; follows TTIN/TTOU sent to the dirty arbiter and "
    "gunicornc dirty add/remove).",
    (),
    "dirty arbiter",
    DIRTY_CLASSES,
    "Compare with gunicorn.dirty.workers.",
)
DIRTY_WORKER_EXITS = Instrument(
    "gunicorn.dirty.worker.exits",
    "{worker}",
    Kind.COUNTER,
    "Dirty workers that exited, by reason: timeout (aborted by the dirty arbiter for a missed heartbeat), killed "
    "(a signal it could not handle: SIGKILL, the OOM killer, a crash, or an abort it was too stuck to handle), "
    "error (its run loop raised), normal.",
    ("gunicorn.dirty.worker.exit.reason",),
    "arbiter",
    DIRTY_CLASSES,
    "Alert on any rate of timeout or killed: calls were cut off and the replacement reloads its dirty apps.",
)
DIRTY_CALLS_ACTIVE = Instrument(
    "gunicorn.dirty.calls.active",
    "{call}",
    Kind.UPDOWNCOUNTER,
    "Calls the dirty workers are running right now.",
    (DIRTY_APP_ATTRIBUTE, DIRTY_ACTION_ATTRIBUTE),
    "dirty worker",
    DIRTY_CLASSES,
    "In-flight heavy work; gunicorn's dirty arbiter sends each dirty worker one call at a time.",
)
DIRTY_CALL_DURATION = Instrument(
    "gunicorn.dirty.call.duration",
    "s",
    Kind.HISTOGRAM,
    "Time a dirty worker spent on a call, from receiving it until its action returned (a streaming action: until "
    "its last chunk); a failed call carries error.type (timeout, or the exception's class).",
    (DIRTY_APP_ATTRIBUTE, DIRTY_ACTION_ATTRIBUTE, ERROR_TYPE),
    "dirty worker",
    DIRTY_CLASSES,
    "Latency of the heavy work by app and action, without the time the call waited for a dirty worker.",
)
DIRTY_CALL_TIMEOUTS = Instrument(
    "gunicorn.dirty.call.timeouts",
    "{call}",
    Kind.COUNTER,
    "Calls a dirty worker gave up on after dirty_timeout seconds. The action's thread may run on (Python cannot stop "
    "a thread): the worker's next call may wait for it.",
    (DIRTY_APP_ATTRIBUTE, DIRTY_ACTION_ATTRIBUTE),
    "dirty worker",
    DIRTY_CLASSES,
    "Any rate means callers got an error: raise dirty_timeout or make the action faster.",
)
CHANNEL_CONNECTIONS = Instrument(
    "otel_gunicorn.channel.connections",
    "{connection}",
    Kind.COUNTER,
    "Connections to the arbiter's channel, by outcome (refused: not one of this server's workers).",
    ("outcome",),
    "arbiter",
    ALL_CLASSES,
    "Any refused connection deserves a look: something else on the host tried to report.",
)
CHANNEL_REPORTS = Instrument(
    "otel_gunicorn.channel.reports",
    "{report}",
    Kind.COUNTER,
    "Worker reports received by the arbiter, by outcome (rejected: malformed or oversized, dropped).",
    ("outcome",),
    "arbiter",
    ALL_CLASSES,
    "Rejected reports mean lost freshness (the next report repairs the data).",
)
REPORTS_DROPPED = Instrument(
    "otel_gunicorn.worker.reports.dropped",
    "{report}",
    Kind.COUNTER,
    "Reports a worker could not deliver to the arbiter in time (the next one repairs the data).",
    (),
    "worker",
    ALL_CLASSES,
    "Non-zero: the arbiter is overloaded or its channel is gone.",
)
OTLP_SNAPSHOTS = Instrument(
    "otel_gunicorn.otlp.snapshots",
    "{snapshot}",
    Kind.COUNTER,
    "Merged snapshots handed to the OTLP exporter process, by outcome (dropped: it had not taken the previous one "
    "yet, busy with a slow or unreachable collector).",
    ("outcome",),
    "arbiter (OTEL_METRICS_EXPORTER=otlp)",
    ALL_CLASSES,
    "A rising dropped rate means the collector is slower than OTEL_METRIC_EXPORT_INTERVAL; nothing is lost "
    "(snapshots are cumulative), data just arrives less often.",
)
OTLP_RESTARTS = Instrument(
    "otel_gunicorn.otlp.exporter.restarts",
    "{restart}",
    Kind.COUNTER,
    "Times the arbiter restarted its OTLP exporter process after it died.",
    (),
    "arbiter (OTEL_METRICS_EXPORTER=otlp)",
    ALL_CLASSES,
    "Should stay 0; otherwise the exporter process's log on stderr says why.",
)
ENDPOINT_HANDSHAKES_FAILED = Instrument(
    "otel_gunicorn.endpoint.handshakes.failed",
    "{connection}",
    Kind.COUNTER,
    "Connections to the metrics endpoint closed because their TLS handshake failed or timed out.",
    (),
    "arbiter (with a web-config that sets tls_server_config)",
    ALL_CLASSES,
    "Plain HTTP sent to the TLS port, a client certificate the endpoint refuses, a port scan, or a client that "
    "never spoke. Not logged (anything that reaches the port could fill the log), so this is where it shows. A "
    "rising count with failing scrapes: check the scraper's scheme, CA and client certificate.",
)
ENDPOINT_FAMILIES_DROPPED = Instrument(
    "otel_gunicorn.endpoint.families.dropped",
    "{family}",
    Kind.COUNTER,
    "Metric families left out of a scrape because another family of a different type has the same Prometheus name.",
    (),
    "arbiter (Prometheus endpoint)",
    ALL_CLASSES,
    "Should stay 0. Two instrumentations record the same name as different kinds (e.g. a counter and a gauge); "
    "only the first is exposed and the log names it once a minute. Rename one of them.",
)

# ---------------------------------------------------------------- worker health: the process, read by the arbiter

#: the worker's slot; the arbiter's own process series carry no slot at all, which is how they are told apart
PROCESS_ATTRS = (SLOT_ATTRIBUTE,)
#: incubating semantic-convention attributes (opentelemetry-semantic-conventions spells them in its ``_incubating``
#: modules; tests/unit/test_process_health.py checks these spellings against the installed package)
CPU_MODE_ATTRIBUTE = "cpu.mode"
GC_GENERATION_ATTRIBUTE = "cpython.gc.generation"
PROCESS_MEASURED_IN = "arbiter (from /proc, every report interval, for each worker and itself)"
PROCESS_CLASSES = "all (Linux)"

PROCESS_MEMORY_USAGE = Instrument(
    "process.memory.usage",
    "By",
    Kind.UPDOWNCOUNTER,
    "Resident memory of the worker holding the slot (VmRSS in /proc/<pid>/status: the pages in RAM, those shared "
    "with the arbiter and the other workers included); without a slot, the arbiter's own.",
    PROCESS_ATTRS,
    PROCESS_MEASURED_IN,
    PROCESS_CLASSES,
    "What max_requests is for: a slot whose memory climbs from one recycle to the next, or a worker that grows "
    'steadily, leaks (docs/usage.md, "Tuning max_requests from these numbers"). Pages shared copy-on-write with the '
    "arbiter count in every worker, so the sum over the slots overstates what the server takes.",
)
PROCESS_MEMORY_VIRTUAL = Instrument(
    "process.memory.virtual",
    "By",
    Kind.UPDOWNCOUNTER,
    "Size of the address space of the worker holding the slot (VmSize); without a slot, the arbiter's.",
    PROCESS_ATTRS,
    PROCESS_MEASURED_IN,
    PROCESS_CLASSES,
    "Mostly reserved rather than used (thread stacks, allocator arenas): watch its trend, not its size; the resident "
    "memory is what runs out.",
)
PROCESS_CPU_TIME = Instrument(
    "process.cpu.time",
    "s",
    Kind.COUNTER,
    "CPU time by mode (user, system) of the workers that held the slot, summed: a replaced worker's final time is "
    "kept, so the series only grows. Read from /proc every report interval; a worker's final time is the kernel's "
    "account of the reaped process (which includes the processes it waited for). Without a slot, the arbiter's own.",
    (CPU_MODE_ATTRIBUTE, SLOT_ATTRIBUTE),
    PROCESS_MEASURED_IN,
    PROCESS_CLASSES,
    "rate() is the share of a core the slot uses: near 1 for a sync worker means CPU-bound requests, and a worker at "
    "1 whose requests do not finish is spinning. System time well above user time points at I/O or memory pressure.",
)
PROCESS_THREADS = Instrument(
    "process.thread.count",
    "{thread}",
    Kind.UPDOWNCOUNTER,
    "Threads of the worker holding the slot; without a slot, the arbiter's.",
    PROCESS_ATTRS,
    PROCESS_MEASURED_IN,
    PROCESS_CLASSES,
    "gthread: --threads plus a few of the worker's own. A count that only grows means the application starts "
    "threads it never ends.",
    prometheus_base="process.threads",
)
PROCESS_DESCRIPTORS = Instrument(
    "process.unix.file_descriptor.count",
    "{file_descriptor}",
    Kind.UPDOWNCOUNTER,
    "Open file descriptors of the worker holding the slot (absent where /proc does not let the arbiter count them, "
    "e.g. workers of another user); without a slot, the arbiter's.",
    PROCESS_ATTRS,
    PROCESS_MEASURED_IN,
    PROCESS_CLASSES,
    "A steady climb is a leak (files, sockets, connections never closed); at the limit (ulimit -n) the worker can "
    "no longer accept or open anything.",
    prometheus_base="process.unix.file_descriptors",
)
PROCESS_READS = Instrument(
    "otel_gunicorn.process.reads",
    "{read}",
    Kind.COUNTER,
    "Reads of a process's /proc files by the arbiter (each worker and itself, every report interval), by outcome "
    "(failed: the process had just exited, or its files could not be read).",
    ("outcome",),
    "arbiter",
    PROCESS_CLASSES,
    "A few failed reads while workers are replaced are normal; a steady failed rate means /proc is closed to the "
    "arbiter (hidepid, another user's workers) and the process metrics are absent.",
)

# ---------------------------------------------------------------- worker health: the garbage collector, in workers

#: from 100 µs (a young generation) to a second (a full collection of a large heap)
GC_PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GC_MEASURED_IN = "worker (gc.callbacks, from the moment its application is loaded)"
GC_CLASSES = "all (CPython; HTTP workers, not dirty workers)"

GC_COLLECTIONS = Instrument(
    "cpython.gc.collections",
    "{collection}",
    Kind.COUNTER,
    "Collections of each generation by the workers that held the slot.",
    (GC_GENERATION_ATTRIBUTE, SLOT_ATTRIBUTE),
    GC_MEASURED_IN,
    GC_CLASSES,
    "Generation 2 (full) collections are the expensive ones; their rate grows with the objects the application "
    "keeps alive.",
)
GC_COLLECTED = Instrument(
    "cpython.gc.collected_objects",
    "{object}",
    Kind.COUNTER,
    "Objects the collections of each generation freed, in the workers that held the slot.",
    (GC_GENERATION_ATTRIBUTE, SLOT_ATTRIBUTE),
    GC_MEASURED_IN,
    GC_CLASSES,
    "Many objects freed by the collector (not by reference counting) means reference cycles: each costs a "
    "collection's time to reclaim.",
)
GC_UNCOLLECTABLE = Instrument(
    "cpython.gc.uncollectable_objects",
    "{object}",
    Kind.COUNTER,
    "Objects the collections of each generation found unreachable but could not free (gc.garbage), in the workers "
    "that held the slot.",
    (GC_GENERATION_ATTRIBUTE, SLOT_ATTRIBUTE),
    GC_MEASURED_IN,
    GC_CLASSES,
    "Should stay 0: anything else is memory the worker never gets back.",
)
GC_PAUSE = Instrument(
    # no semantic convention exists for the time a collection takes: the name is otel_gunicorn's own
    "gunicorn.worker.gc.pause.duration",
    "s",
    Kind.HISTOGRAM,
    "Time each garbage collection took in the workers, from its start to its end as gc.callbacks report them, by "
    "generation. The collector holds the GIL: the worker runs none of its Python code meanwhile. otel_gunicorn's "
    "name: the semantic conventions have none for it.",
    (GC_GENERATION_ATTRIBUTE,),
    GC_MEASURED_IN,
    GC_CLASSES,
    "Every request running in the worker waits out a pause: a p99 of full collections near your latency SLO is "
    "worth gc.freeze() after preloading, or fewer long-lived objects.",
)

ALL = (
    LISTENER_QUEUED,
    LISTENER_LIMIT,
    WORKER_COUNT,
    WORKER_LIMIT,
    WORKER_EXITS,
    HEARTBEAT_AGE,
    ACTIVE_CONNECTIONS,
    CONNECTION_LIMIT,
    THREADS,
    THREAD_LIMIT,
    THREAD_QUEUE,
    CONCURRENCY,
    LOOP_UTILIZATION,
    SERVER_UTILIZATION,
    SERVER_CAPACITY,
    ACTIVE_REQUESTS,
    REQUEST_DURATION,
    SLOW_REQUESTS,
    QUEUE_DURATION,
    QUEUE_HEADER_INVALID,
    ROUTES_OVERFLOW,
    DIRTY_WORKER_COUNT,
    DIRTY_WORKER_LIMIT,
    DIRTY_WORKER_EXITS,
    DIRTY_CALLS_ACTIVE,
    DIRTY_CALL_DURATION,
    DIRTY_CALL_TIMEOUTS,
    CHANNEL_CONNECTIONS,
    CHANNEL_REPORTS,
    REPORTS_DROPPED,
    OTLP_SNAPSHOTS,
    OTLP_RESTARTS,
    ENDPOINT_HANDSHAKES_FAILED,
    ENDPOINT_FAMILIES_DROPPED,
    PROCESS_MEMORY_USAGE,
    PROCESS_MEMORY_VIRTUAL,
    PROCESS_CPU_TIME,
    PROCESS_THREADS,
    PROCESS_DESCRIPTORS,
    PROCESS_READS,
    GC_COLLECTIONS,
    GC_COLLECTED,
    GC_UNCOLLECTABLE,
    GC_PAUSE,
)

#: the metrics the Prometheus endpoint shows under :attr:`Instrument.prometheus_base`, by the name they have elsewhere
PROMETHEUS_RENAMED = {i.meta: i.meta._replace(name=i.prometheus_base) for i in ALL if i.prometheus_base}


def for_prometheus(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with the metrics of :data:`PROMETHEUS_RENAMED` under their Prometheus names (in the same order,
    their points the same dicts); ``snapshot`` itself when it has none of them.

    ``process.thread.count`` and ``process.unix.file_descriptor.count`` are semantic-convention names, kept in OTLP;
    the official mapping makes gauges of them ending in ``_count``, which Prometheus reserves for histograms and
    summaries (``promtool check metrics`` rejects them), so the endpoint names them ``process_threads`` (Prometheus'
    own name for it) and ``process_unix_file_descriptors``.
    """
    if not any(meta in PROMETHEUS_RENAMED for meta in snapshot):
        return snapshot
    return {PROMETHEUS_RENAMED.get(meta, meta): points for meta, points in snapshot.items()}
