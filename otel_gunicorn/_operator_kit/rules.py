"""The Prometheus rule file: recording rules for the per-deployment signals, and the alerts with their runbook links.

Used by the operator-kit command (``python -m otel_gunicorn._operator_kit``, from a developer's shell: ``make
docs``) and by ``tests/e2e/test_promql.py``, which checks each alert's signal against a real server; never inside
gunicorn. The thresholds are the package's (:mod:`otel_gunicorn._operator_kit`), shared with the dashboard's red lines.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from otel_gunicorn._operator_kit import (
    ERROR_RATIO,
    GENERATED_BY,
    HEARTBEAT_WARNING_SECONDS,
    LISTENER_FULL_RATIO,
    MEMORY_GROWTH_FOR,
    MEMORY_GROWTH_PER_HOUR,
    MEMORY_GROWTH_WINDOW,
    RUNBOOK,
)
from otel_gunicorn._operator_kit.promql import (
    CONNECTION_LIMIT,
    CONNECTIONS,
    DURATION,
    EXITS,
    HEARTBEAT,
    IN_FLIGHT,
    LISTENER,
    QUEUE_TIME,
    QUEUED,
    REASON,
    ROUTE,
    SLOT,
    THREAD_QUEUE,
    THREADS,
    WORKER_LIMIT,
    WORKER_STATE,
    WORKERS,
    aggregate,
    busy_thread_ratio,
    busy_worker_ratio,
    capacity_share,
    eq,
    error_ratio,
    exits,
    listener_fill,
    memory_growth,
    quantile,
    request_rate,
    series,
)

RULE_WINDOW = "5m"
PER_SERVER = ("job", "instance")


def show(name: str) -> str:
    """An alert annotation's template for the value of label ``name``."""
    return "{{ $labels." + name + " }}"


@dataclasses.dataclass(frozen=True)
class Alert:
    """One alerting rule: ``signal`` is the quantity, ``condition`` the threshold that makes it fire.

    Kept apart so tests/e2e/test_promql.py can check the signal against a real server even where the test cannot
    push it over the threshold. ``signal`` must not end in a comparison or set operator at its top level: the
    condition is appended to it.
    """

    name: str
    signal: str
    condition: str
    duration: str
    severity: str
    summary: str
    description: str

    @property
    def expr(self) -> str:
        return f"{self.signal} {self.condition}"

    @property
    def runbook_url(self) -> str:
        return f"{RUNBOOK}#{self.name.lower()}"

    def rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.duration != "0m":
            rule["for"] = self.duration
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {
            "summary": self.summary,
            "description": self.description,
            "runbook_url": self.runbook_url,
        }
        return rule


def _saturation_alerts() -> list[Alert]:
    # A worker of a concurrent class (gthread, gevent, asgi, uvicorn-worker...) counts as busy while it serves one
    # request of many it could take, so "every worker busy" means saturation only for workers without a connection
    # limit or connection count: sync. gthread's ceiling is its threads, the next alert.
    busy = series(WORKERS, (), eq(WORKER_STATE, "busy"))
    sync_busy = f"{busy} unless on (job, instance) {CONNECTIONS} unless on (job, instance) {CONNECTION_LIMIT}"
    return [
        Alert(
            "GunicornListenerQueueFull",
            listener_fill([*PER_SERVER, LISTENER], ()),
            f"> {LISTENER_FULL_RATIO}",
            "5m",
            "critical",
            f"Accept queue of {show(LISTENER)} on {show('instance')} is {{{{ $value | humanizePercentage }}}} full",
            "Connections wait in the kernel for a worker to accept them; once the queue reaches its limit the kernel "
            "drops or refuses new ones. The workers cannot keep up with the traffic.",
        ),
        Alert(
            "GunicornAllWorkersBusy",
            f"{aggregate('sum', PER_SERVER, sync_busy)} / {aggregate('sum', PER_SERVER, WORKER_LIMIT)}",
            ">= 1",
            "5m",
            "warning",
            "Every worker of {{ $labels.instance }} has been busy for 5 minutes",
            "Each sync worker serves one request at a time and all of them are serving: new requests wait in the "
            "listener queue.",
        ),
        Alert(
            "GunicornThreadPoolExhausted",
            busy_thread_ratio(PER_SERVER, ()),
            ">= 1",
            "5m",
            "warning",
            "Every request thread of {{ $labels.instance }} has been busy for 5 minutes",
            "All gthread request threads are running requests: accepted requests wait in the thread pool queue.",
        ),
    ]


def _exit_alerts() -> list[Alert]:
    return [
        Alert(
            "GunicornWorkerTimeoutOrKilled",
            exits([*PER_SERVER, REASON], (), RULE_WINDOW, "timeout|killed"),
            "> 0",
            "0m",
            "warning",
            f"A worker of {show('instance')} exited by {show(REASON)}",
            "{{ $value | humanize }} worker(s) in the last 5 minutes were aborted by the arbiter after missing "
            "--timeout, or killed by a signal the arbiter did not send (the OOM killer, a crash): the requests they "
            "were serving were cut off.",
        ),
        Alert(
            "GunicornWorkerErrorExits",
            exits(PER_SERVER, (), RULE_WINDOW, "error"),
            "> 0",
            "0m",
            "warning",
            "A worker of {{ $labels.instance }} exited with an error",
            "{{ $value | humanize }} worker(s) in the last 5 minutes left through an unhandled exception or a "
            "non-zero exit status; the arbiter replaces them, but a crash loop costs capacity.",
        ),
        Alert(
            "GunicornWorkerHeartbeatLate",
            aggregate("max", [*PER_SERVER, SLOT], f"max_over_time({HEARTBEAT}[2m])"),
            f"> {HEARTBEAT_WARNING_SECONDS}",
            "0m",
            "warning",
            f"Worker slot {show(SLOT)} of {show('instance')} went "
            "{{ $value | humanizeDuration }} without a heartbeat",
            f"A worker did not notify the arbiter for more than {HEARTBEAT_WARNING_SECONDS} s. At --timeout (30 s by "
            "default) the arbiter aborts it, cutting off its request. The threshold assumes the default --timeout.",
        ),
    ]


def _health_alerts() -> list[Alert]:
    return [
        Alert(
            "GunicornWorkerMemoryGrowing",
            memory_growth([*PER_SERVER, SLOT], (), MEMORY_GROWTH_WINDOW),
            f"> {MEMORY_GROWTH_PER_HOUR}",
            MEMORY_GROWTH_FOR,
            "warning",
            f"Worker slot {show(SLOT)} of {show('instance')} grows by "
            "{{ $value | humanizePercentage }} of its memory per hour",
            f"The resident memory of the worker holding the slot has grown steadily (its trend over "
            f"{MEMORY_GROWTH_WINDOW}, for {MEMORY_GROWTH_FOR}) by more than {MEMORY_GROWTH_PER_HOUR:.0%} of its size "
            "per hour: a leak, or a cache without a bound. Unchecked it ends in the OOM killer; max_requests bounds "
            "it by replacing the worker.",
        ),
    ]


def _availability_alerts() -> list[Alert]:
    # `up` exists for every target Prometheus scrapes; only those that served otel_gunicorn metrics in the last day
    # are ours (the rules cannot know your job names). A target down for longer than that is forgotten.
    ours = aggregate("group", PER_SERVER, f"last_over_time({WORKER_LIMIT}[1d])")
    return [
        Alert(
            "GunicornTargetDown",
            f"up * on (job, instance) {ours}",
            "== 0",
            "1m",
            "critical",
            "Prometheus cannot scrape otel_gunicorn on {{ $labels.instance }}",
            "The endpoint of a server that served otel_gunicorn metrics today does not answer scrapes: the server "
            "is down, or its endpoint is unreachable, so none of its other alerts can fire.",
        ),
        Alert(
            "GunicornHighErrorRatio",
            error_ratio(["job"], (), RULE_WINDOW),
            f"> {ERROR_RATIO}",
            "5m",
            "critical",
            "{{ $value | humanizePercentage }} of the requests of {{ $labels.job }} fail",
            f"More than {ERROR_RATIO:.0%} of the requests of the last 5 minutes failed: a 5xx status, cut off by a "
            "worker --timeout, or an exception (error.type).",
        ),
    ]


def alerts() -> list[Alert]:
    """Every alert, in the order of docs/alerts.md."""
    return [*_saturation_alerts(), *_exit_alerts(), *_health_alerts(), *_availability_alerts()]


def recording_rules() -> list[dict[str, str]]:
    """Per-deployment (``job``) signals, named ``level:metric:operations`` as Prometheus recommends."""
    by, none, w = ["job"], (), RULE_WINDOW
    recorded = {
        f"job:{WORKERS}_busy:ratio": busy_worker_ratio(by, none),
        f"job:{THREADS}_busy:ratio": busy_thread_ratio(by, none),
        f"job:{QUEUED}_per_limit:max": listener_fill(by, none),
        f"job:{THREAD_QUEUE}:sum": aggregate("sum", by, THREAD_QUEUE),
        f"job:{IN_FLIGHT}:sum": aggregate("sum", by, series(IN_FLIGHT)),
        f"job:{DURATION}_count:rate{w}": request_rate(by, none, w),
        f"job:{DURATION}_count_errors:ratio_rate{w}": error_ratio(by, none, w),
        f"job:{DURATION}:p50_rate{w}": quantile(0.5, DURATION, by, none, w),
        f"job:{DURATION}:p99_rate{w}": quantile(0.99, DURATION, by, none, w),
        f"job:{QUEUE_TIME}:p99_rate{w}": quantile(0.99, QUEUE_TIME, by, none, w),
        f"job_{REASON}:{EXITS.removesuffix('_total')}:rate{w}": exits([*by, REASON], none, w, function="rate"),
        f"job_{ROUTE}:{DURATION}_sum:capacity_share_rate{w}": capacity_share(by, none, w),
    }
    return [{"record": name, "expr": expr} for name, expr in recorded.items()]


def rules() -> dict[str, Any]:
    """The rule file: one group of recording rules, one of alerts."""
    return {
        "groups": [
            {"name": "otel_gunicorn.recording", "rules": recording_rules()},
            {"name": "otel_gunicorn.alerts", "rules": [alert.rule() for alert in alerts()]},
        ]
    }


def render_rules() -> str:
    # never folded: a PromQL expression or a template split across lines is valid YAML but hard to read and to grep
    body = yaml.safe_dump(rules(), sort_keys=False, width=1 << 16, allow_unicode=True)
    return f"# {GENERATED_BY}\n# Runbook: docs/alerts.md. Tests: otel-gunicorn.rules_test.yml beside this file.\n{body}"
