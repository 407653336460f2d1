"""Configuration as an operator meets it: fail fast on our variables, stay out of the way when told to."""

from __future__ import annotations

import socket
import textwrap

import pytest

from harness import net
from harness.scrape import wait_reports
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

#: the port OpenTelemetry's Prometheus exporter defaults to
OTEL_DEFAULT_PORT = 9464
#: worker reports the arbiter accepted, as OTLP names them (``otel_gunicorn_channel_reports_total`` on the endpoint)
REPORTS = "otel_gunicorn.channel.reports"


def pushing_to(collector) -> dict[str, str]:
    """The settings that push the server's metrics to ``collector`` too (every 250 ms), beside its Prometheus
    endpoint: where the endpoint cannot serve, the collector still counts the reports the arbiter received."""
    return {
        **collector.export_env("metrics"),
        "OTEL_METRICS_EXPORTER": "prometheus,otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "250",
    }


def reports_pushed_to(collector) -> float | None:
    """The newest count of accepted worker reports the collector received (None before the first push)."""
    accepted = [p.value for p in collector.points(REPORTS) if p.attributes.get("outcome") == "accepted"]
    return accepted[-1] if accepted else None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_GUNICORN_METRICS_INTERVAL", "soon"),
        ("OTEL_GUNICORN_METRICS_INTERVAL", "0"),
        ("OTEL_GUNICORN_MAX_FRAME_BYTES", "12"),
        ("OTEL_GUNICORN_CHANNEL_DIR", "/nonexistent/dir"),
        ("OTEL_GUNICORN_SLOW_REQUEST_SECONDS", "-1"),
    ],
)
def test_bad_setting_stops_gunicorn_before_any_worker(run_gunicorn, variable, value):
    """A bad OTEL_GUNICORN_* value exits non-zero at once, with one line naming variable, value and what is accepted."""
    result = run_gunicorn(env={variable: value})
    assert 0 != result.returncode
    lines = [line for line in result.stderr.splitlines() if variable in line]
    assert 1 == len(lines), result.stderr
    assert repr(value) in lines[0] and "expected" in lines[0]
    assert "Booting worker" not in result.stderr


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("OTEL_GUNICORN_METRIC_INTERVAL", "OTEL_GUNICORN_METRICS_INTERVAL"),
        ("OTEL_GUNICORN_LOGFORMAT", "OTEL_GUNICORN_LOG_FORMAT"),
    ],
)
def test_misspelt_own_variable_stops_gunicorn_naming_the_right_one(run_gunicorn, typo, meant):
    """A name under OTEL_GUNICORN_ that otel_gunicorn does not read stops gunicorn with one line suggesting the name."""
    result = run_gunicorn(env={typo: "1"})
    assert 0 != result.returncode
    lines = [line for line in result.stderr.splitlines() if typo in line]
    assert 1 == len(lines), result.stderr
    assert f"did you mean {meant}?" in lines[0]
    assert "Booting worker" not in result.stderr


def test_bad_standard_port_warns_and_uses_the_default(start_gunicorn):
    """A bad OTEL_EXPORTER_PROMETHEUS_PORT follows the OTel rule: a warning, then the endpoint on the default port."""
    if not net.port_free(OTEL_DEFAULT_PORT):
        pytest.skip(f"127.0.0.1:{OTEL_DEFAULT_PORT}, the default port, is in use on this machine right now")
    # ready only once the endpoint serves on the default port
    server = start_gunicorn(env={"OTEL_EXPORTER_PROMETHEUS_PORT": "http"}, metrics_port=OTEL_DEFAULT_PORT)
    assert "OTEL_EXPORTER_PROMETHEUS_PORT='http' is not valid" in server.log()
    [info] = server.samples("target_info")
    assert str(server.pid) == info.labels["process_pid"], "another server answered on the default port"
    assert [200] * 5 == server.load(5)
    server.wait_value("app_requests_total", 5)


def test_metrics_exporter_none_serves_no_endpoint(start_gunicorn):
    """OTEL_METRICS_EXPORTER=none: the application serves and nothing listens on the metrics port."""
    server = start_gunicorn(env={"OTEL_METRICS_EXPORTER": "none"}, wait_metrics=False)
    assert 200 == server.get("/")[0]
    with pytest.raises(ConnectionRefusedError):
        server.scrape_text()


def test_sdk_disabled_turns_everything_off(tmp_path, start_gunicorn):
    """OTEL_SDK_DISABLED=true: no endpoint, no channel directory, requests served."""
    channel_dir = tmp_path / "channel"
    channel_dir.mkdir()
    server = start_gunicorn(
        env={"OTEL_SDK_DISABLED": "true", "OTEL_GUNICORN_CHANNEL_DIR": str(channel_dir)}, wait_metrics=False
    )
    assert [200] * 10 == server.load(10)
    with pytest.raises(ConnectionRefusedError):
        server.scrape_text()
    assert [] == list(channel_dir.iterdir())


def test_own_hooks_chain_with_ours(tmp_path, start_gunicorn):
    """A user's gunicorn.conf.py keeps its own hooks by calling ours from them, and metrics still merge."""
    marks = tmp_path / "marks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        textwrap.dedent(f"""
        from otel_gunicorn.hooks import *  # noqa: F403
        from otel_gunicorn import hooks as otel_hooks

        workers = 2

        def when_ready(server):
            otel_hooks.when_ready(server)
            open({str(marks)!r}, "a").write("when_ready\\n")

        def post_fork(server, worker):
            otel_hooks.post_fork(server, worker)
            open({str(marks)!r}, "a").write("post_fork\\n")
    """)
    )
    server = start_gunicorn(config=str(conf))
    assert [200] * 20 == server.load(20)
    server.wait_value("app_requests_total", 20)
    assert ["post_fork", "post_fork", "when_ready"] == sorted(marks.read_text().split())


def test_metrics_port_taken_keeps_the_application_serving(start_gunicorn):
    """A metrics port already in use never stops the application; the log names the port."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        server = start_gunicorn(env={"OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}, wait_metrics=False)
        assert [200] * 20 == server.load(20)
        said = f"cannot serve metrics on 127.0.0.1:{port}"
        wait_until(server.log, 5, what=f"the port in the log: {said!r}", until=lambda log: said in log)
    finally:
        blocker.close()
    # the endpoint keeps retrying in the background and serves once the port is free
    server.wait_value("app_requests_total", 20, timeout=20)
    assert 1 == server.log().count("cannot serve metrics on")


def test_a_failing_start_leaves_the_application_serving(start_gunicorn):
    """If otel_gunicorn cannot start in the arbiter (no socket can be made in /proc), requests are still served."""
    server = start_gunicorn(args=["-w", "2"], env={"OTEL_GUNICORN_CHANNEL_DIR": "/proc"}, wait_metrics=False)
    assert [200] * 20 == server.load(20)
    assert "could not start in the arbiter; the application runs without its telemetry" in server.log()
    assert server.process.poll() is None


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("no-such-host.invalid", "OTEL_EXPORTER_PROMETHEUS_HOST='no-such-host.invalid' does not resolve"),
        ("192.0.2.1", "OTEL_EXPORTER_PROMETHEUS_HOST='192.0.2.1' is not an address of this machine"),
    ],
)
def test_a_metrics_host_that_can_never_work_is_one_error_not_endless_retries(start_gunicorn, start_rotel, host, said):
    """A host that does not resolve, or is not local (192.0.2.1 is TEST-NET-1): one line, no retries, no endpoint,
    the application serves."""
    collector = start_rotel()
    server = start_gunicorn(env={"OTEL_EXPORTER_PROMETHEUS_HOST": host, **pushing_to(collector)}, wait_metrics=False)
    wait_until(server.log, 10, what=f"the error in the log: {said!r}", until=lambda log: said in log)
    assert [200] * 10 == server.load(10)
    # retries would be every 0.5-1 s: two more reports of the worker (every 0.5 s) give them time to show
    wait_reports(lambda: reports_pushed_to(collector), workers=1)
    log = server.log()
    assert 1 == log.count("no Prometheus endpoint"), log
    assert "retrying in the background" not in log


def test_a_metrics_port_that_is_gunicorns_own_is_one_error(start_gunicorn, start_rotel):
    """OTEL_EXPORTER_PROMETHEUS_PORT equal to a port gunicorn listens on: one line naming it, the app serves on it."""
    port = net.free_port()
    collector = start_rotel()
    env = {"OTEL_EXPORTER_PROMETHEUS_PORT": str(port), **pushing_to(collector)}
    server = start_gunicorn(args=["-b", f"{net.LOOPBACK}:{port}"], env=env, wait_metrics=False)
    said = f"OTEL_EXPORTER_PROMETHEUS_PORT={port} is a port gunicorn itself listens on"
    wait_until(server.log, 10, what=f"the error in the log: {said!r}", until=lambda log: said in log)
    assert [200] * 10 == server.load(10)
    # retries would be every 0.5-1 s: two more reports of the worker (every 0.5 s) give them time to show
    wait_reports(lambda: reports_pushed_to(collector), workers=1)
    assert 1 == server.log().count("no Prometheus endpoint")


def test_an_unknown_propagator_is_one_warning_and_the_default_is_used(start_gunicorn):
    """OTEL_PROPAGATORS=foo: the OpenTelemetry API would stop gunicorn with a traceback; instead one warning, and
    callers' traceparent headers are still continued (tracecontext, the default)."""
    server = start_gunicorn(env={"OTEL_PROPAGATORS": "foo", "OTEL_TRACES_EXPORTER": "console"})
    assert [200] * 5 == server.load(5)
    server.wait_value("app_requests_total", 5)
    log = server.log()
    assert 1 == log.count("OTEL_PROPAGATORS='foo': no installed propagator is called 'foo'"), log
    assert "Traceback" not in log
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert 200 == server.get("/", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})[0]
    wait_until(
        server.log, 10, what=f"a span continuing the caller's trace {trace_id}", until=lambda log: trace_id in log
    )
