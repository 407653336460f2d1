"""gunicorn's logging settings under otel_gunicorn's logging, against a real gunicorn: nothing the user set is dropped.

``--access-logfile``/``--error-logfile`` paths (across USR1 and HUP), ``--statsd-host`` next to the structured access
log, ``--env OTEL_GUNICORN_LOG_FORMAT``, and JSON mode meaning JSON on every line, the OTLP exporter process's
included.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from harness import net
from harness.waiting import wait_until
from tests.e2e.json_log import json_lines

pytestmark = pytest.mark.e2e

JSON = {"OTEL_GUNICORN_LOG_FORMAT": "json"}


def access_paths(records: list[dict]) -> list[str]:
    return [r["path"] for r in records if r.get("logger") == "gunicorn.access"]


def file_records(path: Path) -> list[dict]:
    return json_lines(path.read_text()) if path.exists() else []


def wait_access_in(path: Path, request_path: str) -> list[dict]:
    return wait_until(
        lambda: [r for r in file_records(path) if r.get("path") == request_path],
        10,
        what=f"the access record of {request_path} in {path}",
    )


# ---------------------------------------------------------------- --access-logfile / --error-logfile PATH


def test_access_and_error_logfile_paths_get_the_structured_lines(start_gunicorn, tmp_path):
    """--access-logfile PATH and --error-logfile PATH with python:otel_gunicorn.conf: the JSON lines go to the files,
    not to stdout/stderr (today: empty files, everything on the standard streams)."""
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    server = start_gunicorn(
        "logging_app:app", args=["--access-logfile", str(access), "--error-logfile", str(error)], env=JSON
    )
    assert 200 == server.get("/hello?name=x")[0]

    (record,) = wait_access_in(access, "/hello")
    assert ("request", 200, "name=x") == (record["event"], record["status"], record["query"])
    assert [] == access_paths(json_lines(server.log()))
    errors = file_records(error)
    assert any(r["event"].startswith("Booting worker") for r in errors)
    assert {"gunicorn.error", "otel_gunicorn"} >= {r["logger"] for r in errors}  # ours are forwarded there
    # the application's own records still go to stderr, as the root logger did before
    assert any(r.get("logger") == "app" for r in json_lines(server.log()))


def test_access_logfile_in_console_mode_has_no_colours(start_gunicorn, tmp_path):
    """Console format in a file: the readable line, never ANSI escapes (a file is not a terminal)."""
    access = tmp_path / "access.log"
    server = start_gunicorn("logging_app:app", args=["--access-logfile", str(access)])
    assert 200 == server.get("/plain")[0]
    line = wait_until(
        lambda: [ln for ln in access.read_text().splitlines() if "path=/plain" in ln], 10, what="the access line"
    )[0]
    assert "[gunicorn.access]" in line and "status=200" in line
    assert "\x1b[" not in line


def test_accesslog_setting_in_a_config_file(start_gunicorn, tmp_path):
    """``accesslog = PATH`` in the user's own configuration file works as the command-line flag does."""
    access = tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from otel_gunicorn.hooks import *  # noqa: F403\n"
        "from otel_gunicorn.logs import GunicornLogger, logconfig_dict\n"
        "logger_class = GunicornLogger\n"
        'logconfig_dict = logconfig_dict("json")\n'
        f"accesslog = {str(access)!r}\n"
    )
    server = start_gunicorn("logging_app:app", config=str(conf))
    assert 200 == server.get("/from-conf")[0]
    wait_access_in(access, "/from-conf")
    assert [] == access_paths(json_lines(server.log()))


def test_log_files_survive_usr1_rotation_and_hup(start_gunicorn, tmp_path):
    """USR1 after moving the files away (log rotation) reopens them; after HUP each request is still written once."""
    access, error = tmp_path / "access.log", tmp_path / "error.log"
    server = start_gunicorn(
        "logging_app:app",
        args=["-w", "2", "--access-logfile", str(access), "--error-logfile", str(error)],
        env=JSON,
        workers=2,
    )
    assert 200 == server.get("/before")[0]
    wait_access_in(access, "/before")

    access.rename(tmp_path / "access.log.1")
    error.rename(tmp_path / "error.log.1")
    server.signal(signal.SIGUSR1)
    wait_until(
        lambda: (error.exists(), access.exists()),
        10,
        what="USR1 to reopen both files (error log, access log exist)",
        until=all,
    )

    def rotated() -> list[str | None]:  # each worker reopens when it handles USR1: retry until the request lands there
        server.get("/rotated")
        return [r.get("path") for r in file_records(access)]

    wait_until(
        rotated, 10, what="an access record of /rotated in the reopened file", until=lambda paths: "/rotated" in paths
    )
    assert "Handling signal: usr1" in [r["event"] for r in file_records(tmp_path / "error.log.1")]

    old_workers = server.worker_pids()
    server.signal(signal.SIGHUP)
    wait_until(
        server.worker_pids,
        20,
        what=f"2 new workers, none of {sorted(old_workers)}",
        until=lambda pids: len(pids) == 2 and not pids & old_workers,
    )
    assert 200 == server.get("/after-hup")[0]
    after = wait_access_in(access, "/after-hup")
    assert 1 == len(after)
    assert 1 == [r["event"] for r in file_records(error)].count("Handling signal: hup")
    assert [] == access_paths(json_lines(server.log()))


# ---------------------------------------------------------------- --statsd-host


class StatsdAgent:
    """A UDP socket on loopback standing in for a statsd agent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((net.LOOPBACK, 0))
        self.sock.settimeout(0.2)
        self.packets: list[str] = []

    @property
    def address(self) -> str:
        return f"{net.LOOPBACK}:{self.sock.getsockname()[1]}"

    def receive(self) -> list[str]:
        """Everything that arrived so far (each call waits at most 0.2 s for more)."""
        for _ in range(10_000):
            try:
                self.packets.append(self.sock.recv(65_536).decode())
            except TimeoutError:
                break
        return self.packets

    def named(self, metric: str) -> list[str]:
        return [p for p in self.receive() if p.split(":", 1)[0] == metric]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd_agent():
    agent = StatsdAgent()
    yield agent
    agent.close()


def requests_seen(agent: StatsdAgent, prefix: str) -> int:
    return len(agent.named(f"{prefix}gunicorn.requests"))


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_statsd_keeps_sending_beside_the_structured_access_log(start_gunicorn, statsd_agent, worker):
    """--statsd-host with python:otel_gunicorn.conf: gunicorn's statsd packets (request counter, duration timer,
    status counter, workers gauge; prefix and dogstatsd tags) arrive, and the access log is still structured."""
    args = ["-k", worker, "--access-logfile", "-", "--statsd-host", statsd_agent.address]
    args += ["--statsd-prefix", "app", "--dogstatsd-tags", "env:test"]
    server = start_gunicorn("logging_app:app", args=args, env=JSON)
    for _ in range(5):
        assert 200 == server.get("/hello")[0]
    wait_until(
        lambda: access_paths(json_lines(server.log())),
        10,
        what="5 access records of /hello",
        until=lambda paths: paths.count("/hello") == 5,
    )

    # the readiness probes are requests too: at least our 5, and the three per-request metrics for each
    wait_until(
        lambda: requests_seen(statsd_agent, "app."), 10, what="the requests' statsd packets", until=lambda n: n >= 5
    )
    requests = statsd_agent.named("app.gunicorn.requests")
    assert {"app.gunicorn.requests:1|c|@1.0|#env:test"} == set(requests)
    durations = statsd_agent.named("app.gunicorn.request.duration")
    statuses = statsd_agent.named("app.gunicorn.request.status.200")
    assert len(requests) == len(durations) == len(statuses)
    assert all(p.endswith("|ms|#env:test") for p in durations)
    assert {"app.gunicorn.request.status.200:1|c|@1.0|#env:test"} == set(statuses)
    assert ["app.gunicorn.workers:1|g|#env:test"] == statsd_agent.named("app.gunicorn.workers")[:1]


def test_statsd_sends_what_plain_gunicorn_sends(start_gunicorn, statsd_agent):
    """The same requests to plain gunicorn and to python:otel_gunicorn.conf give the same statsd metric names."""

    def names(config: str | None) -> set[str]:
        server = start_gunicorn(
            "logging_app:app", args=["--statsd-host", statsd_agent.address], config=config, wait_metrics=False
        )
        for _ in range(5):
            assert 200 == server.get("/hello")[0]
        wait_until(
            lambda: requests_seen(statsd_agent, ""), 10, what="the requests' statsd packets", until=lambda n: n >= 6
        )
        server.stop()
        sent = {p.split("|", 1)[0].split(":", 1)[0] + "|" + p.split("|")[1] for p in statsd_agent.receive()}
        statsd_agent.packets.clear()
        return sent

    plain = names(None)
    assert {"gunicorn.requests|c", "gunicorn.request.status.200|c", "gunicorn.workers|g"} <= plain
    assert plain == names("python:otel_gunicorn.conf")


# ---------------------------------------------------------------- --env OTEL_GUNICORN_LOG_FORMAT


def test_env_flag_sets_the_log_format(start_gunicorn):
    """--env OTEL_GUNICORN_LOG_FORMAT=json (gunicorn sets it only after reading the configuration) gives JSON."""
    server = start_gunicorn("logging_app:app", args=["--access-logfile", "-", "--env", "OTEL_GUNICORN_LOG_FORMAT=json"])
    assert 200 == server.get("/hello")[0]
    wait_until(
        lambda: access_paths(json_lines(server.log())),
        10,
        what="the access record of /hello",
        until=lambda paths: "/hello" in paths,
    )
    records = json_lines(server.log())
    assert any(r["event"].startswith("Starting gunicorn") for r in records)
    assert any(r.get("logger") == "app" for r in records)


def test_bad_log_format_in_env_flag_stops_gunicorn_with_one_line(run_gunicorn):
    """--env OTEL_GUNICORN_LOG_FORMAT=xml: one line naming it, as the environment variable gives."""
    result = run_gunicorn("logging_app:app", env={"GUNICORN_CMD_ARGS": "--env OTEL_GUNICORN_LOG_FORMAT=xml"})
    assert 0 != result.returncode
    assert [
        "otel_gunicorn: configuration error: OTEL_GUNICORN_LOG_FORMAT='xml' is not valid: expected console or json"
    ] == result.stderr.splitlines()


# ---------------------------------------------------------------- JSON means JSON on every line


def test_every_line_is_json_with_the_exporter_process_failing(start_gunicorn):
    """JSON mode, OTLP metrics to an unreachable collector, traces on: every line on stdout and stderr is a JSON
    object, the exporter process's "OTLP export failing" warning among them."""
    unreachable = f"http://{net.LOOPBACK}:{net.free_port()}"
    env = {
        **JSON,
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_EXPORTER_OTLP_ENDPOINT": unreachable,
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_TRACES_EXPORTER": "otlp",
    }
    server = start_gunicorn("logging_app:app", args=["--access-logfile", "-"], env=env, wait_metrics=False)
    for path in ("/one", "/two", "/three"):
        assert 200 == server.get(path)[0]

    def exporter_warning() -> list[dict]:
        return [r for r in json_lines(server.log()) if "OTLP export failing" in r["event"]]

    (warning,) = wait_until(exporter_warning, 20, what="the exporter process's warning")
    assert ("warning", "otel_gunicorn.exporter") == (warning["level"], warning["logger"])
    assert warning["pid"] != server.pid and warning["timestamp"].endswith("Z")
    server.stop()
    records = json_lines(server.log())
    assert 3 == len([r for r in records if r.get("logger") == "app"])
    assert {"/one", "/two", "/three"} <= set(access_paths(records))


def test_sdk_warning_while_gunicorn_reads_its_configuration_is_json(start_gunicorn):
    """A bad OTEL_RESOURCE_ATTRIBUTES is found while gunicorn reads its configuration, before it configures logging
    (the SDK logs it as it is imported; otel_gunicorn says it instead, once per server): in JSON mode that line is
    JSON too (it was the bare message), and every other line as well."""
    server = start_gunicorn("logging_app:app", env={**JSON, "OTEL_RESOURCE_ATTRIBUTES": "bad"})
    records = json_lines(server.log())  # every line JSON
    about = [r for r in records if "OTEL_RESOURCE_ATTRIBUTES" in str(r.get("event", ""))]
    assert [server.pid] == [r["pid"] for r in about]


# ---------------------------------------------------------------- worker classes that mirror gunicorn's access log


@pytest.mark.parametrize("access_log", [False, True], ids=["access-log-off", "access-logfile-stdout"])
def test_uvicorn_worker_logs_requests_only_when_gunicorn_would(start_gunicorn, access_log):
    """uvicorn-worker hands gunicorn's access-log handlers to ``uvicorn.access``: without ``--access-logfile`` plain
    gunicorn gives it none, and so must we (before: a line per request nobody asked for, +110 µs a request)."""
    pytest.importorskip("uvicorn_worker")
    args = ["-k", "uvicorn_worker.UvicornWorker", *(["--access-logfile", "-"] if access_log else [])]
    server = start_gunicorn("slow_asgi:app", args=args, env=JSON)
    count = "http_server_request_duration_seconds_count"
    before = server.value(count) or 0
    for _ in range(3):
        assert 200 == server.get("/")[0]
    # the three requests are done and measured (the harness's readiness probe may or may not be in ``before``)
    wait_until(
        lambda: server.value(count),
        15,
        what=f"the requests in the merged count, {before} + 3",
        until=lambda measured: (measured or 0) >= before + 3,
    )

    def uvicorn_access_lines() -> list[str]:
        return [r["event"] for r in json_lines(server.log()) if r.get("logger") == "uvicorn.access"]

    if access_log:
        lines = wait_until(lambda: [e for e in uvicorn_access_lines() if '"GET / HTTP/1.1" 200' in e], 10)
        assert 3 == len(lines)
    else:
        assert [] == uvicorn_access_lines()
