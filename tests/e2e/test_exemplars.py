"""Exemplars end to end: sampled requests to a real gunicorn (3 workers) reach a real Prometheus with exemplar storage
and a real OTLP collector (Rotel) with their trace ids, from more than one worker; ``always_off`` shows none anywhere.

Every request carries its own sampled ``traceparent``, so its trace id names it; the counting app answers with the
pid of the worker that served it, which ties each trace id to a worker. Request spans are on (printed by the console
exporter: no trace backend needed), so the request core has a sampled span to take the exemplar from.
"""

from __future__ import annotations

import concurrent.futures
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.prometheus import promtool_check
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
#: durations spread over several buckets of http.server.request.duration, so a scrape shows several exemplars
PATHS = ("/", "/slow?0.007", "/slow?0.02", "/slow?0.06", "/slow?0.15")
TRACED = {"OTEL_TRACES_EXPORTER": "console", "OTEL_GUNICORN_METRICS_INTERVAL": "0.3"}
_EXEMPLAR = re.compile(r'# \{span_id="[0-9a-f]{16}",trace_id="([0-9a-f]{32})"\}')
_ROTEL_EXEMPLAR = re.compile(r"Exemplar #\d+\s+-> Trace ID: ([0-9a-f]{32})")


class Traffic:
    """Requests with their own sampled trace ids; which worker (pid) served each trace."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.pid_of: dict[str, int] = {}

    def send(self, requests: int = 15) -> None:
        def one(index: int) -> None:
            trace_id = secrets.token_hex(16)
            headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
            status, body = self.server.get(PATHS[index % len(PATHS)], headers=headers)
            assert 200 == status
            self.pid_of[trace_id] = int(body)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            list(pool.map(one, range(requests)))

    def pids(self, trace_ids: set[str]) -> set[int]:
        """The workers that served ``trace_ids`` (all of which must have been sent)."""
        unknown = trace_ids - set(self.pid_of)
        assert not unknown, f"exemplars of traces never sent: {sorted(unknown)[:3]}"
        return {self.pid_of[t] for t in trace_ids}


def exemplar_trace_ids(prometheus: Any, metric: str, since: float) -> set[str]:
    found = prometheus.query_exemplars(metric, since, time.time() + 1)
    return {e["labels"]["trace_id"] for series in found for e in series["exemplars"]}


def test_prometheus_stores_exemplars_from_every_worker(start_gunicorn, start_prometheus):
    """query_exemplars of the request-duration buckets returns trace ids we sent, served by more than one worker,
    and the application's own counter carries exemplars of our traces too."""
    server = start_gunicorn(args=["-w", "3"], env=TRACED)
    prometheus = start_prometheus([f"127.0.0.1:{server.metrics_port}"], flags=("--enable-feature=exemplar-storage",))
    traffic, since = Traffic(server), time.time() - 5
    found: set[str] = set()

    def workers_with_exemplars() -> set[int]:
        traffic.send()
        found.update(exemplar_trace_ids(prometheus, "http_server_request_duration_seconds_bucket", since))
        return traffic.pids(found)

    wait_until(
        workers_with_exemplars, 60, what="exemplars from two workers in Prometheus", until=lambda pids: len(pids) >= 2
    )
    # every scrape of the OpenMetrics exposition, exemplars and all, went through
    assert {"1"} == {sample["value"][1] for sample in prometheus.query('up{job="gunicorn"}')}
    wait_until(
        lambda: traffic.pids(exemplar_trace_ids(prometheus, "app_requests_total", since)),
        30,
        what="an exemplar of the application's counter",
    )
    wait_until(
        lambda: traffic.pids(exemplar_trace_ids(prometheus, "app_latency_seconds_bucket", since)),
        30,
        what="an exemplar of the application's histogram",
    )


def openmetrics_check(exposition: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """Prometheus's own OpenMetrics parser over ``exposition``: promtool 2.42's ``check metrics`` reads only the text
    format, but ``tsdb create-blocks-from openmetrics`` parses OpenMetrics — exemplars included — once each sample
    has the timestamp a backfill needs (added here, before any exemplar; nothing else changes)."""
    stamped = []
    for line in exposition.splitlines():
        if not line.startswith("#"):
            sample, marker, exemplar = line.partition(" # {")
            line = f"{sample} {int(time.time())}{marker}{exemplar}"
        stamped.append(line)
    source = workdir / f"exposition-{time.monotonic_ns()}.txt"
    source.write_text("\n".join(stamped) + "\n")
    return subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "blocks")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_promtool_accepts_both_expositions_with_exemplars(start_gunicorn, tmp_path):
    """The OpenMetrics exposition carries exemplars (of our traces) and Prometheus's OpenMetrics parser accepts it;
    the text one carries none and ``promtool check metrics`` accepts it."""
    server = start_gunicorn(args=["-w", "3"], env=TRACED)
    traffic = Traffic(server)

    def exposed() -> set[str]:
        traffic.send()
        return set(_EXEMPLAR.findall(server.scrape_text(OPENMETRICS)))

    wait_until(exposed, 30, what="3 exemplars in the OpenMetrics exposition", until=lambda ids: len(ids) >= 3)
    openmetrics, text = server.scrape_text(OPENMETRICS), server.scrape_text()
    traffic.pids(set(_EXEMPLAR.findall(openmetrics)))
    assert " # {" not in text
    assert openmetrics.endswith("# EOF\n")
    parsed = openmetrics_check(openmetrics, tmp_path)
    assert 0 == parsed.returncode, parsed.stdout + parsed.stderr
    result = promtool_check(text)
    assert (0, "") == (result.returncode, result.stdout + result.stderr)


def rotel_exemplar_trace_ids(collector: Any) -> set[str]:
    """Trace ids of the exemplars Rotel received (its debug output: ``Exemplar #N`` then ``-> Trace ID: ...``)."""
    return set(_ROTEL_EXEMPLAR.findall(collector.log()))


def test_otlp_delivers_the_exemplars(start_gunicorn, start_rotel):
    """The merged OTLP stream carries exemplars of the request durations with trace ids we sent, from more than one
    worker."""
    collector = start_rotel()
    env = {**collector.export_env("metrics"), **TRACED, "OTEL_METRICS_EXPORTER": "otlp"}
    server = start_gunicorn(args=["-w", "3"], env=env, wait_metrics=False)
    traffic = Traffic(server)

    def workers_with_exemplars() -> set[int]:
        traffic.send()
        return traffic.pids(rotel_exemplar_trace_ids(collector))

    wait_until(
        workers_with_exemplars,
        60,
        what="exemplars from two workers at the collector",
        until=lambda pids: len(pids) >= 2,
    )


def test_always_off_shows_no_exemplar_anywhere(start_gunicorn, start_rotel):
    """OTEL_METRICS_EXEMPLAR_FILTER=always_off: sampled requests, yet no exemplar in either exposition or in OTLP."""
    collector = start_rotel()
    env = {
        **collector.export_env("metrics"),
        **TRACED,
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_METRICS_EXEMPLAR_FILTER": "always_off",
    }
    server = start_gunicorn(args=["-w", "3"], env=env)
    traffic = Traffic(server)
    for _ in range(3):
        traffic.send()
    server.wait_value("app_requests_total", len(traffic.pid_of))
    sent = len(traffic.pid_of)
    wait_until(
        lambda: collector.last_value("app.requests"),
        20,
        what=f"the collector's total, {sent}",
        until=lambda total: total == sent,
    )
    assert " # {" not in server.scrape_text(OPENMETRICS)
    assert " # {" not in server.scrape_text()
    assert "Exemplar" not in collector.log()


def test_with_tracing_off_a_callers_sampled_trace_still_makes_exemplars(start_gunicorn):
    """Tracing off (the default), 30 requests with sampled traceparents: as the SDK does with a non-recording span,
    the OpenMetrics exposition has exemplars of http.server.request.duration with those trace ids, and only those."""
    server = start_gunicorn(args=["-w", "2"], env={"OTEL_GUNICORN_METRICS_INTERVAL": "0.3"})
    traffic = Traffic(server)
    traffic.send(30)

    def request_exemplars() -> set[str]:
        text = server.scrape_text(OPENMETRICS)
        durations = [line for line in text.splitlines() if line.startswith("http_server_request_duration_seconds")]
        return set(_EXEMPLAR.findall("\n".join(durations)))

    found = wait_until(request_exemplars, 15, what="exemplars of the request durations", until=bool)
    traffic.pids(found)  # every one a trace we sent
    assert "trace_id" not in server.scrape_text(), "the classic text format has no place for them"
