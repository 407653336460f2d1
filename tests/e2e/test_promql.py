"""Every PromQL expression of the operator kit, run against a real Prometheus scraping real gunicorn under traffic.

The expressions, read from the committed files: each query of docs/grafana/otel-gunicorn.json and of its template
variables (``$job``, ``$instance`` and the others resolved as Grafana would: by running the variable queries), each
recording rule and each alert of docs/prometheus/otel-gunicorn.rules.yml. A renamed metric, label or label value
empties a query and fails this test.

Three servers of the operator_kit test app: ``sync`` (2 workers, ``--backlog 4``, ``--timeout 4``) is driven into
every condition the alerts watch — a full accept queue, every worker busy, a crashed, a killed and a timed-out worker,
5xx responses; ``gthread`` (2 workers × 2 threads) gets its thread pool full and requests queued in it; ``doomed``
is stopped once Prometheus has scraped it, to take a target down. Each expression must return a sample that is not
NaN at some moment of the scenario, except the alerts in :data:`NEEDS_A_CONDITION_NOT_CREATED`, whose *signal* (the
alert without its threshold) must return one instead.

The Prometheus fixture loads no rule files, so the recording rules are not loaded: their expressions are evaluated
directly, as the alerts' are (which is what the rule evaluation would run).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import http.client
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from harness.waiting import wait_until
from otel_gunicorn._operator_kit import HEARTBEAT_WARNING_SECONDS
from otel_gunicorn._operator_kit.promql import EXITS, REASON
from otel_gunicorn._operator_kit.rules import alerts

pytestmark = pytest.mark.e2e

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "otel-gunicorn.json"
RULES = DOCS / "prometheus" / "otel-gunicorn.rules.yml"
#: alerts whose threshold this test cannot reach in its few seconds, and why
NEEDS_A_CONDITION_NOT_CREATED = {
    "GunicornWorkerHeartbeatLate": f"needs a worker silent for more than {HEARTBEAT_WARNING_SECONDS} s "
    "(two thirds of gunicorn's default --timeout): longer than this test may run",
    "GunicornWorkerMemoryGrowing": "needs a worker whose memory grows by 10 % of its size per hour for an hour; in "
    "this test's seconds only a worker's warm-up can push the slope over it, and not reliably",
}
#: what Grafana puts in for its own variables; 1 m holds many 1 s scrapes, the test's traffic lasts ~20 s
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "5m"}
#: how long the expressions may take to all return a sample once the scenario is over
GRACE = 30.0
SLOW = "/slow?2"
TRANSIENT = (OSError, http.client.HTTPException)


def expressions() -> dict[str, str]:
    """name -> PromQL of every query in the committed dashboard and rule files (for a skipped alert: its signal)."""
    board = json.loads(DASHBOARD.read_text())
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    signals = {alert.name: alert for alert in alerts() if alert.name in NEEDS_A_CONDITION_NOT_CREATED}
    found = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for rule in rules:
        if "record" in rule:
            found[f"record {rule['record']}"] = rule["expr"]
        elif rule["alert"] in signals:
            assert signals[rule["alert"]].expr == rule["expr"], "the rule file is stale: regenerate it"
            found[f"signal of alert {rule['alert']}"] = signals[rule["alert"]].signal
        else:
            found[f"alert {rule['alert']}"] = rule["expr"]
    return found


def label_values_query(definition: str) -> tuple[str, str]:
    """``label_values(SELECTOR, LABEL)`` -> (the PromQL that finds those values, LABEL)."""
    matched = re.fullmatch(r"label_values\((.*), (\w+)\)", definition)
    assert matched, f"not a label_values() query: {definition}"
    return f"count by ({matched[2]}) ({matched[1]})", matched[2]


def interpolate(expr: str, values: dict[str, str]) -> str:
    """Replace ``$name`` as Grafana does; every variable must be known."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("$" + name, values[name])
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def as_regex(found: list[str]) -> str:
    """A multi-value variable the way Grafana writes it into a ``=~`` matcher: ``(a|b)``, regex characters escaped."""
    return "(" + "|".join(re.escape(value).replace("\\", "\\\\") for value in sorted(found)) + ")"


def resolve_variables(prometheus, instances: int) -> dict[str, str]:
    """Run the dashboard's variable queries in order, as Grafana does; each must find its values."""
    values = dict(GRAFANA_BUILTINS)
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query, label = label_values_query(interpolate(variable["query"], values))

        def found(query: str = query, label: str = label) -> list[str]:
            return sorted(r["metric"][label] for r in prometheus.query(query))

        def complete(names: list[str], label: str = label) -> bool:
            return bool(names) and (label != "instance" or len(names) == instances)

        names = wait_until(found, 20, what=f"values of ${variable['name']} from {query}", until=complete)
        values[variable["name"]] = as_regex(names) if variable["multi"] else names[0]
    return values


def has_a_number(result: list[dict]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


@contextlib.contextmanager
def running(work: Callable[[threading.Event], None]) -> Iterator[concurrent.futures.Future[None]]:
    """``work(stop)`` in a thread for the duration of the block; its exception is raised when the block ends."""
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(work, stop)
        try:
            yield future
        finally:
            stop.set()
    future.result()


def attempt(server, path: str, **kwargs) -> int | None:
    """One GET whose failure is expected (a worker dying under it, a full queue): its status or None."""
    try:
        return server.get(path, **kwargs)[0]
    except TRANSIENT:
        return None


def traffic(servers) -> Callable[[threading.Event], None]:
    """Steady requests to every server: 200s, 500s, and requests carrying a proxy's X-Request-Start header."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            for server in servers:
                attempt(server, "/")
                attempt(server, "/fail")
                attempt(server, "/", headers={"X-Request-Start": f"t={int((time.time() - 0.05) * 1e6)}"})
            time.sleep(0.05)  # pacing: steady traffic, not a flood that would hide the saturation steps

    return run


def in_parallel(calls: Sequence[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # pacing: connections arrive one after another, as clients' do
    for thread in threads:
        thread.join(60)


def scenario(sync, gthread, doomed) -> Callable[[threading.Event], None]:
    """Target down (Prometheus has scraped it: its instance is in $instance), then both servers saturated, then the
    sync server's workers crash, get killed and time out."""

    def run(_stop: threading.Event) -> None:
        doomed.stop()
        in_parallel(
            [lambda: attempt(sync, SLOW, timeout=30) for _ in range(8)]
            # 12, not 8: GunicornThreadPoolExhausted needs *both* workers' pools full at once, and the kernel may
            # hand one gthread worker most of the connections (failed once with 8)
            + [lambda: attempt(gthread, SLOW, timeout=30) for _ in range(12)]
        )
        # One exit at a time: a worker that answered /crash dies only in its next wait for a connection, and a /kill
        # accepted before that would end it as "killed" instead, leaving no "error" exit at all.
        for path, reason in (("/crash", "error"), ("/kill", "killed"), ("/hang", "timeout")):
            attempt(sync, path, timeout=30)
            wait_until(functools.partial(sync.value, EXITS, **{REASON: reason}), 30, what=f"a {reason} exit")

    return run


def poll(prometheus, pending: dict[str, str], scenario: concurrent.futures.Future[None]) -> dict[str, str]:
    """Query every pending expression until each returned a number, or the scenario ended :data:`GRACE` s ago."""
    pending = dict(pending)
    deadline = None
    while pending and (deadline is None or time.monotonic() < deadline):
        for name, promql in list(pending.items()):
            if has_a_number(prometheus.query(promql)):
                del pending[name]
        if deadline is None and scenario.done():
            deadline = time.monotonic() + GRACE
        time.sleep(0.5)  # pacing: Prometheus scrapes every second
    return pending


def test_every_dashboard_and_rule_expression_returns_samples(start_gunicorn, start_prometheus):
    """Every query of the dashboard, every recording rule and every alert returns a sample from real servers."""
    slow = {"OTEL_GUNICORN_SLOW_REQUEST_SECONDS": "1"}  # the /slow requests (2 s) count as slow
    sync = start_gunicorn("operator_kit:app", args=["-w", "2", "--backlog", "4", "--timeout", "4"], env=slow)
    gthread = start_gunicorn("operator_kit:app", args=["-k", "gthread", "-w", "2", "--threads", "2"], env=slow)
    doomed = start_gunicorn("operator_kit:app", args=["-w", "1"])
    servers = (sync, gthread, doomed)
    prometheus = start_prometheus([f"127.0.0.1:{s.metrics_port}" for s in servers])
    with running(traffic((sync, gthread))):
        values = resolve_variables(prometheus, instances=len(servers))
        assert "app_orders_total" == values["app_counter"]
        queries = {name: interpolate(expr, values) for name, expr in expressions().items()}
        with running(scenario(sync, gthread, doomed)) as steps:
            silent = poll(prometheus, queries, steps)
    assert [] == sorted(silent), "no sample from:\n" + "\n".join(f"{name}: {q}" for name, q in silent.items())


def test_the_skipped_alerts_are_real_alerts_with_a_reason():
    """Every alert this test does not push over its threshold exists, and says why it is skipped."""
    names = {alert.name for alert in alerts()}
    assert set(NEEDS_A_CONDITION_NOT_CREATED) <= names
    assert all(reason.strip() for reason in NEEDS_A_CONDITION_NOT_CREATED.values())
