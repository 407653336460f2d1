"""Configuration as an operator meets it: fail fast on our variables, stay out of the way when told to."""

from __future__ import annotations

import socket
import textwrap

import pytest

from harness import net
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

#: the port OpenTelemetry's Prometheus exporter defaults to
OTEL_DEFAULT_PORT = 9464


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_GUNICORN_METRICS_INTERVAL", "soon"),
        ("OTEL_GUNICORN_METRICS_INTERVAL", "0"),
        ("OTEL_GUNICORN_MAX_FRAME_BYTES", "12"),
        ("OTEL_GUNICORN_CHANNEL_DIR", "/nonexistent/dir"),
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
        wait_until(lambda: f"cannot serve metrics on 127.0.0.1:{port}" in server.log(), 5, what="the port in the log")
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
