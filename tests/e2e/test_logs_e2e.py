"""Structured logs from a real gunicorn: the application's records and the access log as JSON, once each, across HUP;
no secret from a failing frame in any line."""

from __future__ import annotations

import importlib.util
import re
import signal
import textwrap

import pytest

from harness.waiting import LogText, wait_until
from tests.e2e.json_log import json_lines

pytestmark = pytest.mark.e2e

TRACE_KEYS = {"trace_id", "span_id", "trace_flags"}

# What a user writes: our hooks, our logger class, our logging configuration. (otel_gunicorn's own post_fork
# gives the worker's log records its slot.)
CONF = """\
from otel_gunicorn.hooks import *  # noqa: F403
from otel_gunicorn.logs import GunicornLogger, logconfig_dict

logger_class = GunicornLogger
logconfig_dict = logconfig_dict("json")
accesslog = "-"
"""

WORKERS = {
    "sync": ("logging_app:app", ["-k", "sync"]),
    "gthread": ("logging_app:app", ["-k", "gthread", "--threads", "2"]),
    "asgi": ("logging_app:asgi_app", ["-k", "asgi"]),
}


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "gunicorn_logs.conf.py"
    path.write_text(CONF)
    return str(path)


def records(server) -> list[dict]:
    """Every line of the combined log as a JSON object; fails on any line that is not one."""
    return json_lines(server.log())


def app_records(server) -> list[dict]:
    return [r for r in records(server) if r.get("logger") == "app"]


def access_records(server, path: str) -> list[dict]:
    return [r for r in records(server) if r.get("logger") == "gunicorn.access" and r.get("path") == path]


def wait_access(server, path: str, count: int = 1) -> list[dict]:
    return wait_until(
        lambda: access_records(server, path),
        10,
        what=f"{count} access record(s) for {path}",
        until=lambda found: len(found) >= count,
    )


@pytest.mark.parametrize("worker", list(WORKERS))
def test_app_and_access_records_are_json_objects(start_gunicorn, conf, worker):
    """One request writes one app record and one access record, both JSON objects with their fields."""
    app, args = WORKERS[worker]
    server = start_gunicorn(app, args=args, config=conf)
    status, body = server.get("/hello?name=x", headers={"User-Agent": "tests/1", "Referer": "http://ref.test/"})
    assert 200 == status

    (access,) = wait_access(server, "/hello")
    (in_app,) = app_records(server)
    expected_access = {
        "event": "request",
        "level": "info",
        "method": "GET",
        "query": "name=x",
        "status": 200,
        "bytes": len(body),
        "remote_addr": "127.0.0.1",
        "user_agent": "tests/1",
        "referer": "http://ref.test/",
        "protocol": "HTTP/1.1",
    }
    assert expected_access == {k: access[k] for k in expected_access}
    assert isinstance(access["duration"], float) and 0 <= access["duration"] < 5
    assert ("in.app", "info") == (in_app["event"], in_app["level"])
    for record in (in_app, access):
        assert record["timestamp"].endswith("Z")
        assert record["pid"] in server.worker_pids()
        assert isinstance(record["gunicorn.worker.slot"], int)
    # no traceparent and no server span: the request's lines still share ids of its own, marked not sampled
    assert {k: in_app[k] for k in TRACE_KEYS} == {k: access[k] for k in TRACE_KEYS}
    assert "00" == access["trace_flags"] and re.fullmatch("[0-9a-f]{32}", access["trace_id"])
    # ... and the next request has others
    assert 200 == server.get("/hello?name=y")[0]
    wait_access(server, "/hello", 2)
    assert 2 == len({r["trace_id"] for r in access_records(server, "/hello")})


def test_arbiter_records_are_json_without_a_slot(start_gunicorn, conf):
    """gunicorn's own records from the arbiter are JSON objects too, with the arbiter's pid and no slot."""
    server = start_gunicorn("logging_app:app", config=conf)
    starting = [r for r in records(server) if r["event"].startswith("Starting gunicorn")]
    assert 1 == len(starting)
    assert ("gunicorn.error", server.pid) == (starting[0]["logger"], starting[0]["pid"])
    assert "gunicorn.worker.slot" not in starting[0]


def test_logging_survives_hup_without_duplicates(start_gunicorn, conf):
    """After HUP (config re-read, logging re-applied, new workers) each request is still logged exactly once."""
    server = start_gunicorn("logging_app:app", args=["-w", "2"], config=conf)
    assert 200 == server.get("/before")[0]
    wait_access(server, "/before")
    old_workers = server.worker_pids()

    server.signal(signal.SIGHUP)
    wait_until(
        server.worker_pids,
        20,
        what=f"2 new workers, none of {sorted(old_workers)}",
        until=lambda pids: len(pids) == 2 and not pids & old_workers,
    )
    assert 200 == server.get("/after")[0]

    (after,) = wait_access(server, "/after")
    assert after["pid"] in server.worker_pids()
    assert 1 == len(access_records(server, "/before"))
    assert 2 == len(app_records(server))
    assert 1 == len([r for r in records(server) if r["event"] == "Handling signal: hup"])


def test_bad_log_format_stops_gunicorn_with_one_line(tmp_path, run_gunicorn, conf):
    """OTEL_GUNICORN_LOG_FORMAT=xml with logconfig_dict() reading it: non-zero exit, one line naming it, no worker."""
    (tmp_path / "gunicorn_logs.conf.py").write_text(CONF.replace('logconfig_dict("json")', "logconfig_dict()"))
    result = run_gunicorn("logging_app:app", config=conf, env={"OTEL_GUNICORN_LOG_FORMAT": "xml"})
    assert 0 != result.returncode
    assert [
        "otel_gunicorn: configuration error: OTEL_GUNICORN_LOG_FORMAT='xml' is not valid: expected console or json"
    ] == result.stderr.splitlines(), textwrap.indent(result.stderr, "  ")


# ---------------------------------------------------------------- no secrets in tracebacks

SECRET_ENV = {"APP_API_KEY": "s3cr3t-token", "APP_TOKEN": "abc123"}
SECRETS = ("s3cr3t-token", "Bearer abc123", "abc123")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_failing_frames_secrets_reach_no_log_line(start_gunicorn, tmp_path, log_format):
    """With rich installed (structlog then prints rich tracebacks with every frame's local variables by default),
    an exception logged by the application (stderr) and one gunicorn logs (the error log file) show the exception
    and where it was raised, never the API key or the Authorization value the frames hold; nor does the access log
    (stdout)."""
    assert importlib.util.find_spec("rich") is not None, "this test is about rich being installed (the test extra)"
    error_log = tmp_path / "error.log"
    server = start_gunicorn(
        "secrets_app:app",
        args=["--access-logfile", "-", "--error-logfile", str(error_log)],
        env={"OTEL_GUNICORN_LOG_FORMAT": log_format, **SECRET_ENV},
    )
    headers = {"Authorization": "Bearer abc123"}  # in the WSGI environ, a local of gunicorn's frames too
    assert 502 == server.get("/caught", headers=headers)[0]
    assert 500 == server.get("/raise", headers=headers)[0]

    wait_until(
        lambda: LogText(error_log.read_text()),
        10,
        what="gunicorn's error record, 'Error handling request' in the error log",
        until=lambda log: "Error handling request" in log,
    )
    wait_until(
        server.log,
        10,
        what="the application's error record, 'upstream call failed'",
        until=lambda log: "upstream call failed" in log,
    )
    wait_until(server.log, 10, what="the access record of /raise", until=lambda log: "/raise" in log)
    for where, text in (("stdout and stderr", server.log()), ("the error log", error_log.read_text())):
        assert "RuntimeError: upstream refused the credentials" in text, f"no traceback in {where}:\n{text}"
        assert "_call_upstream" in text, f"no frame in {where}:\n{text}"
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {where}:\n{text}"
    if log_format == "json":
        json_lines(server.log())  # still one object per line


# ---------------------------------------------------------------- structlog events over OTLP


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_structlog_events_reach_the_collector_with_their_own_keys_and_no_warning(start_gunicorn, start_rotel, protocol):
    """OTEL_LOGS_EXPORTER=otlp and a structlog application: each event arrives with the event as its body and its own
    keys as attributes (an object as its str()), none of structlog's bookkeeping (``_logger``, ``_name``); the run
    exports, and prints, no warning of its own (before: the SDK's "Invalid type" WARN record once per line)."""
    collector = start_rotel()
    server = start_gunicorn("structlog_app:app", args=["-w", "1"], env=collector.export_env("logs", protocol=protocol))
    assert [200] * 5 == server.load(5, concurrency=1)

    paid = wait_until(
        lambda: [r for r in collector.log_records() if r.body == "paid"],
        15,
        what="5 exported events",
        until=lambda found: len(found) >= 5,
    )
    for record in paid:
        assert ("app", "INFO") == (record.scope, record.severity)
        own = {k: v for k, v in record.attributes.items() if not k.startswith("code.")}
        assert {
            "order": "42",
            "price": "9.5",
            "express": "true",
            "tags": "Str(a), Str(b)",
            "customer": "customer 7",
        } == own
    assert [] == [r for r in collector.log_records() if r.severity not in ("INFO", "DEBUG")]
    assert "Invalid type" not in server.log() and "Invalid type" not in collector.log()
