"""The otel_gunicorn Grafana dashboard: its rows of panels, its variables, and the JSON file they make.

Used by the operator-kit command (``python -m otel_gunicorn._operator_kit``, from a developer's shell: ``make
docs``) and by the tests, which run every panel's query against a real Prometheus; never inside gunicorn. Panel
queries are the signals of :mod:`.promql`, limited to the servers picked in ``$job`` and ``$instance``; the red lines
are the package's thresholds, the ones the alerts of :mod:`.rules` fire at.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from otel_gunicorn import _instruments as catalogue
from otel_gunicorn._operator_kit import (
    DOCS,
    ERROR_RATIO,
    GENERATED_BY,
    HEARTBEAT_WARNING_SECONDS,
    LISTENER_FULL_RATIO,
    RUNBOOK,
)
from otel_gunicorn._operator_kit.grafana import (
    BUILTIN_ANNOTATIONS,
    GRID_WIDTH,
    Targets,
    layout,
    legend,
    query_variable,
    stat,
    timeseries,
)
from otel_gunicorn._operator_kit.health import worker_health
from otel_gunicorn._operator_kit.promql import (
    BACKLOG,
    CONNECTION_LIMIT,
    CONNECTIONS,
    DURATION,
    HEARTBEAT,
    IN_FLIGHT,
    LISTENER,
    QUEUE_TIME,
    QUEUED,
    REASON,
    ROUTE,
    SLOT,
    STATUS,
    THREAD_LIMIT,
    THREAD_QUEUE,
    THREAD_STATE,
    THREADS,
    WORKER_LIMIT,
    WORKER_STATE,
    WORKERS,
    aggregate,
    busy_worker_ratio,
    capacity_share,
    eq,
    error_ratio,
    exits,
    listener_fill,
    match,
    prometheus_name,
    quantile,
    request_rate,
    series,
    slow_request_rate,
)

#: every panel query looks at the servers picked in the dashboard's $job and $instance variables
PICKED = (match("job", "$job"), match("instance", "$instance"))
RATE = "$__rate_interval"
#: the Routes row shows the routes with the highest values, each panel its own (Prometheus' topk at every step)
TOP_ROUTES = 10
#: the application's own counters: series of an instrumentation scope other than ours
APP_COUNTERS = series(
    "",
    (match("__name__", ".+_total"), match("job", "$job")),
    'otel_scope_name!=""',
    f'otel_scope_name!="{catalogue.SCOPE_NAME}"',
)


def _overview() -> list[dict[str, Any]]:
    return [
        stat("Requests / s", "Requests completed per second.", request_rate((), PICKED, RATE), "reqps"),
        stat(
            "Errors",
            "Share of requests that failed: 5xx, cut off by a worker timeout, or an exception.",
            error_ratio((), PICKED, RATE),
            "percentunit",
            ERROR_RATIO,
        ),
        stat(
            "p99 latency", "99th percentile of the request duration.", quantile(0.99, DURATION, (), PICKED, RATE), "s"
        ),
        stat(
            "Busy workers",
            "Workers serving at least one request, over the configured worker count.",
            busy_worker_ratio((), PICKED),
            "percentunit",
            1,
        ),
        stat(
            "Fullest accept queue",
            "Connections waiting in the kernel for a worker, over the listener's limit (the fullest listener).",
            listener_fill((), PICKED),
            "percentunit",
            LISTENER_FULL_RATIO,
        ),
        stat(
            "Workers cut off",
            "Workers that timed out or were killed in the dashboard's time range: their requests were cut off.",
            exits((), PICKED, "$__range", "timeout|killed"),
            "short",
            1,
        ),
    ]


def _utilisation() -> list[dict[str, Any]]:
    """The place for the utilisation signal (the saturation issue): one panel per server-wide ``*.utilization`` gauge.

    Every such instrument in the catalogue gets its panel here, first in the saturation row, with no change to this
    module. Per-worker ratios (``gunicorn.worker.loop.utilization``, with a slot) are left out: they are the inputs of
    the server's signal, exist only for event-loop workers, and a panel must show data for every worker class.
    """
    # one panel per metric name: the endpoint serves one family per name, whatever the catalogue holds
    server_wide = {
        instrument.name: instrument
        for instrument in catalogue.ALL
        if instrument.name.endswith(".utilization") and catalogue.SLOT_ATTRIBUTE not in instrument.attributes
    }
    return [
        timeseries(
            f"Utilisation ({instrument.name})",
            instrument.description,
            [(aggregate("max", ["instance"], series(prometheus_name(instrument), PICKED)), legend("instance"))],
            "percentunit",
            width=GRID_WIDTH,
        )
        for instrument in server_wide.values()
    ]


def _against_limit(
    title: str,
    description: str,
    metric: str,
    ceiling: str,
    split: Sequence[str] = (),
    ceiling_split: Sequence[str] = (),
) -> dict[str, Any]:
    """``metric`` per instance (and ``split`` labels) with its ``ceiling`` drawn as a dashed line, a third wide."""
    targets = [
        (aggregate("sum", ["instance", *split], series(metric, PICKED)), legend("instance", *split)),
        (
            aggregate("sum", ["instance", *ceiling_split], series(ceiling, PICKED)),
            legend("instance", *ceiling_split) + " limit",
        ),
    ]
    return timeseries(title, description, targets, width=GRID_WIDTH // 3)


def _saturation() -> list[dict[str, Any]]:
    """How full each server is: utilisation, the accept queue, workers and threads against their limits."""
    return [
        *_utilisation(),
        _against_limit(
            "Accept queue against its limit",
            catalogue.LISTENER_QUEUED.meaning,
            QUEUED,
            BACKLOG,
            [LISTENER],
            [LISTENER],
        ),
        _against_limit(
            "Workers: busy and idle against the limit",
            catalogue.WORKER_COUNT.meaning,
            WORKERS,
            WORKER_LIMIT,
            [WORKER_STATE],
        ),
        _against_limit(
            "Request threads: busy and idle against the limit (gthread)",
            catalogue.THREADS.meaning,
            THREADS,
            THREAD_LIMIT,
            [THREAD_STATE],
        ),
    ]


def _in_flight() -> list[dict[str, Any]]:
    """Work inside the workers: queued and running requests, open connections."""
    per_instance = ["instance"]
    third = GRID_WIDTH // 3
    return [
        timeseries(
            "Queued requests (gthread thread pool)",
            catalogue.THREAD_QUEUE.meaning,
            [(aggregate("sum", per_instance, series(THREAD_QUEUE, PICKED)), legend("instance"))],
            width=third,
        ),
        timeseries(
            "In-flight requests",
            catalogue.ACTIVE_REQUESTS.meaning,
            [(aggregate("sum", per_instance, series(IN_FLIGHT, PICKED)), legend("instance"))],
            width=third,
        ),
        _against_limit(
            "Connections against the limit", catalogue.ACTIVE_CONNECTIONS.meaning, CONNECTIONS, CONNECTION_LIMIT
        ),
    ]


def _percentiles(family: str) -> Targets:
    return [(quantile(q, family, (), PICKED, RATE), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)]


def _requests() -> list[dict[str, Any]]:
    return [
        timeseries(
            "Requests per second by status",
            "Requests completed per second, by HTTP status code.",
            [(request_rate([STATUS], PICKED, RATE), legend(STATUS))],
            "reqps",
        ),
        timeseries(
            "Error ratio",
            "Share of requests that failed (error.type: a 5xx, a worker timeout, an exception), per server.",
            [(error_ratio(["instance"], PICKED, RATE), legend("instance"))],
            "percentunit",
            threshold=ERROR_RATIO,
        ),
        timeseries(
            "Latency",
            f"{catalogue.REQUEST_DURATION.description} The dots are exemplars: one recent request per bucket, linked "
            "to its trace (docs/exemplars.md).",
            _percentiles(DURATION),
            "s",
            exemplars=True,
        ),
        timeseries(
            "Queue time before gunicorn",
            f"{catalogue.QUEUE_DURATION.description} {catalogue.QUEUE_DURATION.meaning} Empty unless the proxy sets "
            "the header.",
            _percentiles(QUEUE_TIME),
            "s",
        ),
    ]


def _routes() -> list[dict[str, Any]]:
    """Which route: rate, errors, p99 and capacity share per ``http.route``, the ``TOP_ROUTES`` highest of each."""

    def top(expr: str) -> Targets:
        return [(f"topk({TOP_ROUTES}, {expr})", legend(ROUTE))]

    half, per_route = GRID_WIDTH // 2, [ROUTE]
    return [
        timeseries(
            "Requests per second by route",
            f"Requests completed per second, by http.route (the {TOP_ROUTES} busiest; no route: a 404).",
            top(request_rate(per_route, PICKED, RATE)),
            "reqps",
            width=half,
        ),
        timeseries(
            "Error ratio by route",
            f"Share of each route's requests that failed (error.type), the {TOP_ROUTES} highest.",
            top(error_ratio(per_route, PICKED, RATE)),
            "percentunit",
            width=half,
            threshold=ERROR_RATIO,
        ),
        timeseries(
            "p99 latency by route",
            f"99th percentile of the request duration per route, the {TOP_ROUTES} slowest.",
            top(quantile(0.99, DURATION, per_route, PICKED, RATE)),
            "s",
            width=half,
        ),
        timeseries(
            "Capacity share by route",
            "Share of the picked servers' capacity (gunicorn.server.capacity: workers, gthread threads or event "
            f"loops) each route's requests take: which route to optimise when utilisation is high. The {TOP_ROUTES} "
            "largest; together they add up to about the busy part of the utilisation.",
            top(capacity_share((), PICKED, RATE)),
            "percentunit",
            width=half,
        ),
        timeseries(
            "Slow requests per second by route",
            f"{catalogue.SLOW_REQUESTS.description} The {TOP_ROUTES} routes with the most. Each request still running "
            "at a worker's check has a log line with the stack of the code it was running and its trace id "
            "(docs/troubleshooting.md).",
            top(slow_request_rate(per_route, PICKED, RATE)),
            "reqps",
            width=GRID_WIDTH,
        ),
    ]


def _workers() -> list[dict[str, Any]]:
    return [
        timeseries(
            "Worker exits by reason",
            f"{catalogue.WORKER_EXITS.description} {catalogue.WORKER_EXITS.meaning}",
            [(exits([REASON], PICKED, RATE), legend(REASON))],
            bars=True,
        ),
        timeseries(
            "Heartbeat age per worker slot",
            f"{catalogue.HEARTBEAT_AGE.meaning} The red line is the GunicornWorkerHeartbeatLate threshold.",
            [
                (
                    aggregate("max", ["instance", SLOT], series(HEARTBEAT, PICKED)),
                    legend("instance") + " slot " + legend(SLOT),
                )
            ],
            "s",
            threshold=HEARTBEAT_WARNING_SECONDS,
        ),
    ]


def _application() -> list[dict[str, Any]]:
    counter = series("", (eq("__name__", "$app_counter"), *PICKED))
    return [
        timeseries(
            "$app_counter per second",
            "The rate of one of the application's own OpenTelemetry counters, picked in the App counter variable.",
            [(aggregate("sum", ["instance"], f"rate({counter}[{RATE}])"), legend("instance"))],
            width=GRID_WIDTH,
        )
    ]


def variables() -> list[dict[str, Any]]:
    """Data source, then job and instance from otel_gunicorn's own worker limit, which every server exports."""
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}}
        | {"hide": 0, "options": [], "refresh": 1, "regex": ""},
        query_variable("job", "Job", f"label_values({WORKER_LIMIT}, job)", "Prometheus jobs scraping otel_gunicorn."),
        query_variable(
            "instance",
            "Instance",
            f"label_values({series(WORKER_LIMIT, [match('job', '$job')])}, instance)",
            "gunicorn servers (one arbiter endpoint each).",
        ),
        query_variable(
            "app_counter",
            "App counter",
            f"label_values({APP_COUNTERS}, __name__)",
            "One of the application's own OpenTelemetry counters.",
            many=False,
        ),
    ]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard (schema 39: Grafana 10.2 and later import it)."""
    rows = [
        ("Overview", _overview()),
        ("Saturation", _saturation()),
        ("Work in progress", _in_flight()),
        ("Requests", _requests()),
        ("Routes", _routes()),
        ("Workers", _workers()),
        ("Worker health", worker_health(PICKED, RATE)),
        ("Application", _application()),
    ]
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.2.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ],
        "annotations": {"list": [BUILTIN_ANNOTATIONS]},
        "description": f"gunicorn servers instrumented by otel_gunicorn. {GENERATED_BY}",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {"title": "Dashboard guide", "type": "link", "url": f"{DOCS}/dashboard.md", "targetBlank": True},
            {"title": "Alert runbook", "type": "link", "url": RUNBOOK, "targetBlank": True},
        ],
        "panels": layout(rows),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["gunicorn", "opentelemetry", "otel_gunicorn"],
        "templating": {"list": variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "gunicorn (otel_gunicorn)",
        "uid": "otel-gunicorn",
        "version": 1,
    }


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
