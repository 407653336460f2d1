"""``opentelemetry-instrument gunicorn -c python:otel_gunicorn.conf ...``, as OpenTelemetry's Python documentation
teaches it: the venv's real ``opentelemetry-instrument`` (opentelemetry-distro, the Flask and Django
instrumentations), real gunicorn, the harness's scrapes and a real collector (Rotel).

The applications are not instrumented in code; each records its own counter ``app.hits`` on ``/``. The servers are
started without the readiness request (``probe=False``), so that every request the instrumentations measure is one of
the test's.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from harness import net, proc
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

REQUESTS = 60
TAKE_OVER = "opentelemetry-instrument's metrics set-up stopped"
METRICS_OFF = "otel_gunicorn: metrics are off: OTEL_METRICS_EXPORTER=none"
FLASK_SCOPE = "opentelemetry.instrumentation.flask"
DJANGO_SCOPE = "opentelemetry.instrumentation.django"


def start(
    start_gunicorn, app: str, env: dict[str, str], *, flags: tuple[str, ...] = (), args: tuple[str, ...] = (), **kwargs
):
    """A 2-worker server started through opentelemetry-instrument (``flags``: its own), without the readiness
    request. (``-w 2`` rather than the harness's ``workers=2``, which counts the master's children: with OTLP one is
    the exporter process.)"""
    settings = {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", **env}
    server = start_gunicorn(
        app, args=["-w", "2", *args], env=settings, instrument=list(flags), probe=False, wait_metrics=False, **kwargs
    )
    # Not the harness's endpoint wait: the distro's own Prometheus server answers on the port until the take-over.
    wait_until(
        lambda: (server.booted(), proc.accept_queue(server.port)),
        30,
        what="2 workers booted, the application port listening",
        until=lambda state: state[0] == 2 and state[1] is not None,
    )
    return server


def load(server) -> None:
    assert [200] * REQUESTS == server.load(REQUESTS, concurrency=4)


def assert_clean(server) -> None:
    """No traceback, no provider refused, the take-over said once."""
    log = server.log()
    assert (False, False, 1) == ("Traceback" in log, "Overriding of current" in log, log.count(TAKE_OVER))


def instrumentation_count(server, scope: str) -> float:
    """Requests the instrumentation measured: its request-duration histogram's count, summed over its series."""
    exposition = server.scrape()
    return sum(
        s.value
        for name in ("http_server_duration_milliseconds_count", "http_server_request_duration_seconds_count")
        for s in exposition.samples(name)
        if s.labels.get("otel_scope_name") == scope
    )


@pytest.mark.parametrize(
    ("app", "scope", "env"),
    [
        ("flask_counting:app", FLASK_SCOPE, {}),
        ("django_counting.wsgi:application", DJANGO_SCOPE, {"DJANGO_SETTINGS_MODULE": "django_counting.settings"}),
    ],
    ids=["flask", "django"],
)
def test_one_prometheus_endpoint_merges_the_app_and_its_instrumentation(start_gunicorn, app, scope, env):
    """prometheus: the arbiter's endpoint, alone on its port, has the app's counter, the instrumentation's request
    count (Django's instruments are made in the arbiter, Flask's in the workers) and the server metrics."""
    server = start(start_gunicorn, app, {"OTEL_METRICS_EXPORTER": "prometheus", **env})
    load(server)
    server.wait_value("app_hits_total", REQUESTS)
    wait_until(
        lambda: instrumentation_count(server, scope),
        5,
        what=f"{scope} count == {REQUESTS}",
        until=lambda count: count == REQUESTS,
    )
    assert server.value("gunicorn_workers") is not None
    assert {server.pid} == proc.listeners(server.metrics_port)
    assert_clean(server)


def test_one_otlp_stream_and_one_server_span_per_request(start_gunicorn, start_rotel):
    """otlp over gRPC (the distro's default protocol) for every signal: one merged metrics stream, under the
    arbiter's resource; each request one trace with one SERVER span; the app's log lines carry their trace id and
    are exported once, through the distro's log handler."""
    collector = start_rotel()
    env = {
        **collector.export_env("metrics", "traces", "logs", protocol="grpc"),
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_GUNICORN_LOG_FORMAT": "json",
    }
    server = start(start_gunicorn, "flask_counting:app", env)
    load(server)

    def merged_hits() -> list:
        points = collector.points("app.hits")
        return points if points and points[-1].value == REQUESTS else []

    points = wait_until(merged_hits, 15, what=f"app.hits == {REQUESTS} at the collector")
    assert {str(server.pid)} == {p.resource.get("process.pid") for p in points}
    assert 1 == len({p.resource.get("service.instance.id") for p in points})
    assert not [p for p in collector.points("app.hits") if "telemetry.auto.version" in p.resource]
    # one series (GET / 200): its newest point is the count over both workers
    wait_until(
        lambda: collector.last_value("http.server.duration"),
        5,
        what="Flask's request count",
        until=lambda count: count == REQUESTS,
    )

    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    app_trace_ids = [r.get("trace_id") for r in records if r.get("event") == "hello from the app"]
    assert REQUESTS == len(app_trace_ids)

    def traces() -> dict[str, list]:
        found: dict[str, list] = {}
        for span in collector.spans():
            if span.kind:  # (a log record's "Trace ID" line makes a span without a kind)
                found.setdefault(span.trace_id, []).append(span)
        return found if set(app_trace_ids) <= set(found) else {}

    by_trace = wait_until(traces, 15, what="every request's spans")
    servers = {t: [s for s in by_trace[t] if s.kind == "SPAN_KIND_SERVER"] for t in app_trace_ids}
    assert {1} == {len(spans) for spans in servers.values()}

    def app_records() -> list:
        return [r for r in collector.log_records() if "hello from the app" in r.body]

    wait_until(
        app_records, 10, what="every app log record at the collector", until=lambda found: len(found) >= REQUESTS
    )
    time.sleep(0.5)  # a record exported twice would arrive in the same batch or the next one (200 ms)
    exported = app_records()
    assert sorted(app_trace_ids) == sorted(r.trace_id for r in exported)
    assert_clean(server)


def test_metrics_exporter_none_says_metrics_are_off(start_gunicorn):
    """``--metrics_exporter none``: requests are served, one line says metrics are off, nothing listens for them."""
    server = start(start_gunicorn, "flask_counting:app", {}, flags=("--metrics_exporter", "none"))
    load(server)
    assert (1, set()) == (server.log().count(METRICS_OFF), proc.listeners(server.metrics_port))
    assert net.port_free(server.metrics_port)


@pytest.mark.parametrize(
    ("flags", "recycled"),
    [(("--preload",), False), (("-k", "gthread", "--threads", "2", "--max-requests", "7"), True)],
    ids=["preload", "gthread-max-requests"],
)
def test_preloaded_or_recycled_workers_stay_exact(start_gunicorn, flags, recycled):
    """``--preload`` (the app and Flask's instruments made in the arbiter, before any fork) and gthread workers
    recycled every 7 requests: the app's counter and Flask's request count are exact at 60, and every recycled
    worker's exit is counted (its totals kept)."""
    server = start(start_gunicorn, "flask_counting:app", {"OTEL_METRICS_EXPORTER": "prometheus"}, args=flags)
    load(server)
    server.wait_value("app_hits_total", REQUESTS)
    wait_until(
        lambda: instrumentation_count(server, FLASK_SCOPE),
        5,
        what=f"Flask's count == {REQUESTS}",
        until=lambda count: count == REQUESTS,
    )
    if recycled:
        wait_until(server.worker_pids, 15, what="2 workers after the recycling", until=lambda pids: len(pids) == 2)
        exits = server.booted() - 2
        assert exits >= 60 // (2 * 7)
        server.wait_value("gunicorn_worker_exits_total", exits)
    assert {server.pid} == proc.listeners(server.metrics_port)
    assert_clean(server)


def test_structlog_events_through_the_distros_log_handler_are_exported_cleanly(start_gunicorn, start_rotel):
    """``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true``: the distro's own handler on root exports a structlog
    application's events with their own keys as attributes, with no "Invalid type" warning of the SDK's (it answered
    structlog's ``_logger`` on every line)."""
    collector = start_rotel()
    env = {
        **collector.export_env("logs", protocol="grpc"),
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
    }
    server = start(start_gunicorn, "structlog_app:app", env)
    assert [200] * 5 == server.load(5, concurrency=1)

    def paid() -> list:
        found = [r for r in collector.log_records() if r.body == "paid"]
        return found if len(found) >= 5 else []

    records = wait_until(paid, 15, what="5 exported events")
    own = [{k: v for k, v in r.attributes.items() if not k.startswith("code.")} for r in records]
    expected = {"order": "42", "price": "9.5", "express": "true", "tags": "Str(a), Str(b)", "customer": "customer 7"}
    assert [expected] * 5 == own
    assert ("Invalid type" in server.log(), "Invalid type" in collector.log()) == (False, False)


FASTAPI_REQUESTS = 20


def scope_count(exposition, scope: str) -> float:
    """``http.server.request.duration``'s count of one instrumentation scope, summed over its series."""
    samples = exposition.samples("http_server_request_duration_seconds_count")
    return sum(s.value for s in samples if s.labels.get("otel_scope_name") == scope)


@pytest.mark.parametrize("worker", ["uvicorn_worker.UvicornWorker", "asgi"])
def test_fastapi_native_telemetry_is_merged_and_joins_the_server_span(start_gunicorn, start_rotel, worker):
    """FastAPI 0.165+ records ``http.server.request.duration`` (scope ``fastapi``, with ``http.route``) and a SERVER
    span of its own through the global providers: at the one endpoint its count is exact beside otel_gunicorn's, in
    one valid family (promtool), and each request is one trace with exactly one SERVER span."""
    collector = start_rotel()
    env = {**collector.export_env("traces"), "OTEL_METRICS_EXPORTER": "prometheus"}
    server = start(start_gunicorn, "fastapi_counting:app", env, args=("-k", worker))
    paths = [f"/items/{i}" for i in range(FASTAPI_REQUESTS)]
    assert [200] * FASTAPI_REQUESTS == [server.get(path)[0] for path in paths]
    server.wait_value("app_hits_total", FASTAPI_REQUESTS)
    exposition = wait_until(
        server.scrape,
        5,
        what=f"{FASTAPI_REQUESTS} requests in both scopes",
        until=lambda e: (scope_count(e, "fastapi"), scope_count(e, "otel_gunicorn")) == (FASTAPI_REQUESTS,) * 2,
    )
    assert {"/items/{item_id}"} == {
        s.labels.get("http_route")
        for s in exposition.samples("http_server_request_duration_seconds_count")
        if s.labels.get("otel_scope_name") == "fastapi"
    }
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=server.scrape_text(), capture_output=True, text=True, check=False
    )
    assert [] == [line for line in checked.stderr.splitlines() if "no help text" not in line]

    def by_trace() -> dict[str, list]:
        found: dict[str, list] = {}
        for span in collector.spans():
            if span.kind:
                found.setdefault(span.trace_id, []).append(span)
        return found

    traces = wait_until(
        by_trace,
        15,
        what="every request's spans",
        until=lambda t: sum(len(s) for s in t.values()) >= 2 * FASTAPI_REQUESTS,
    )
    servers = [[s for s in spans if s.kind == "SPAN_KIND_SERVER"] for spans in traces.values()]
    assert (FASTAPI_REQUESTS, {1}) == (len(traces), {len(s) for s in servers})
    assert_clean(server)
