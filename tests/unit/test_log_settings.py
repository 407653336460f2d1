"""gunicorn's own logging settings kept under otel_gunicorn's logging: log file paths, --env, statsd, and the records
that no handler takes; plus the exporter process's handler and the forwarder's fork guard."""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from gunicorn.asgi.protocol import ASGIResponseInfo, _RequestTime
from gunicorn.instrument.statsd import Statsd

from otel_gunicorn import _gunicorn_log, logs
from otel_gunicorn._config import ConfigError
from otel_gunicorn._logs.config import render_early_records, with_gunicorn_settings
from tests.unit.test_logs import gunicorn_cfg, json_lines, preserved_logging, wsgi_request


@pytest.fixture(autouse=True)
def _clean(monkeypatch) -> Iterator[None]:
    monkeypatch.delenv("OTEL_GUNICORN_LOG_FORMAT", raising=False)
    yield
    structlog.reset_defaults()


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """:func:`preserved_logging`, and the handlers made inside the block closed (gunicorn never closes its log
    files: its loggers live as long as the server)."""
    names = ("", "gunicorn.access", "gunicorn.error")
    before = {id(h) for name in names for h in logging.getLogger(name).handlers}
    made = []
    with preserved_logging():
        try:
            yield
        finally:
            made = [h for name in names for h in logging.getLogger(name).handlers if id(h) not in before]
    for handler in made:
        handler.close()


def file_lines(path: Path) -> list[dict]:
    return json_lines(path.read_text())


def orphan() -> logging.Logger:
    """A logger whose records no handler takes (no handler, no propagation): they go to ``logging.lastResort``."""
    logger = logging.getLogger("tests.orphan")
    logger.propagate = False
    return logger


# ---------------------------------------------------------------- with_gunicorn_settings (pure)


def test_without_settings_the_config_is_unchanged():
    """Nothing to apply ('-' is the standard stream): an equal dict, so GunicornLogger configures nothing twice."""
    config = logs.logconfig_dict("json")
    assert config == with_gunicorn_settings(config, None, accesslog=None, errorlog="-")


def test_an_access_path_replaces_the_stdout_handler_with_a_file_in_the_same_format():
    config = with_gunicorn_settings(logs.logconfig_dict("json"), accesslog="/var/log/a.log", errorlog="-")
    assert ["accesslog"] == config["loggers"]["gunicorn.access"]["handlers"]
    assert {"class": "logging.FileHandler", "formatter": "accesslog", "filename": "/var/log/a.log"} == config[
        "handlers"
    ]["accesslog"]
    assert {**config["formatters"]["stdout"], "colors": False} == config["formatters"]["accesslog"]
    assert (["stderr"], ["stderr"]) == (config["root"]["handlers"], config["loggers"]["gunicorn.error"]["handlers"])


def test_an_error_path_replaces_the_stderr_handler_of_gunicorn_error_only():
    """The application's records (root) stay on stderr, as without a logging configuration."""
    config = with_gunicorn_settings(logs.logconfig_dict("json"), errorlog="/var/log/e.log")
    assert ["errorlog"] == config["loggers"]["gunicorn.error"]["handlers"]
    assert "/var/log/e.log" == config["handlers"]["errorlog"]["filename"]
    assert ["stderr"] == config["root"]["handlers"]


def test_a_logger_the_user_routed_keeps_its_handlers():
    """The docs' example (access log to a file of the user's) is not overridden by --access-logfile."""
    config = logs.logconfig_dict("json")
    config["handlers"]["access_file"] = {"class": "logging.FileHandler", "filename": "/x.log", "formatter": "stdout"}
    config["loggers"]["gunicorn.access"]["handlers"] = ["access_file"]
    assert config == with_gunicorn_settings(config, accesslog="/elsewhere.log")


def test_the_env_format_goes_only_where_the_format_follows_the_environment():
    """logconfig_dict() follows OTEL_GUNICORN_LOG_FORMAT (no log_format key); logconfig_dict("console") is fixed."""
    following, fixed = logs.logconfig_dict(), logs.logconfig_dict("console")
    assert "log_format" not in following["formatters"]["stderr"]
    assert "json" == with_gunicorn_settings(following, "json")["formatters"]["stderr"]["log_format"]
    assert fixed == with_gunicorn_settings(fixed, "json")


def test_a_formatter_following_the_environment_reads_it_when_built(monkeypatch, capsys):
    config = logs.logconfig_dict()
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", "json")
    with isolated():
        logging.config.dictConfig(config)
        logging.getLogger("app").warning("built now")
    (line,) = json_lines(capsys.readouterr().err)
    assert "built now" == line["event"]


# ---------------------------------------------------------------- --access-logfile / --error-logfile PATH


def test_access_logfile_path_gets_the_structured_records(tmp_path, capsys):
    """--access-logfile PATH with logconfig_dict(): the JSON record in the file, nothing on stdout (was the reverse)."""
    path = tmp_path / "access.log"
    with isolated():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog=str(path), logconfig_dict=logs.logconfig_dict("json")))
        log.access(*wsgi_request())
    (line,) = file_lines(path)
    assert ("request", "/hello", 200) == (line["event"], line["path"], line["status"])
    assert "" == capsys.readouterr().out


def test_a_console_line_in_a_file_has_no_colours(tmp_path):
    path = tmp_path / "access.log"
    config = logs.logconfig_dict("console")
    config["formatters"]["stdout"]["colors"] = True  # as when stdout is a terminal
    with isolated():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog=str(path), logconfig_dict=config))
        log.access(*wsgi_request())
    text = path.read_text()
    assert "[gunicorn.access]" in text and "path=/hello" in text
    assert "\x1b[" not in text


def test_error_logfile_path_gets_gunicorns_messages(tmp_path, capsys):
    path = tmp_path / "error.log"
    with isolated():
        log = logs.GunicornLogger(gunicorn_cfg(errorlog=str(path), logconfig_dict=logs.logconfig_dict("json")))
        log.info("Booting worker")
        logging.getLogger("app").info("in.app")
    (line,) = file_lines(path)
    assert ("Booting worker", "gunicorn.error") == (line["event"], line["logger"])
    (app,) = json_lines(capsys.readouterr().err)
    assert "in.app" == app["event"]


def test_setup_again_on_hup_still_writes_each_record_once(tmp_path):
    path = tmp_path / "access.log"
    cfg = gunicorn_cfg(accesslog=str(path), logconfig_dict=logs.logconfig_dict("json"))
    with isolated():
        log = logs.GunicornLogger(cfg)
        log.setup(cfg)
        log.access(*wsgi_request())
    assert 1 == len(file_lines(path))


def test_reopen_files_after_rotation_writes_to_the_new_file(tmp_path):
    """USR1 (gunicorn's reopen_files) after the file was moved away: the next record goes to a new file."""
    path = tmp_path / "access.log"
    with isolated():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog=str(path), logconfig_dict=logs.logconfig_dict("json")))
        log.access(*wsgi_request())
        path.rename(tmp_path / "access.log.1")
        log.reopen_files()
        log.access(*wsgi_request())
    assert (1, 1) == (len(file_lines(path)), len(file_lines(tmp_path / "access.log.1")))


# ---------------------------------------------------------------- --env OTEL_GUNICORN_LOG_FORMAT


def test_env_flag_sets_the_format_of_a_config_following_the_environment(capsys):
    """gunicorn sets --env in os.environ only after Logger.setup; GunicornLogger reads it from the settings."""
    cfg = gunicorn_cfg(raw_env=["OTEL_GUNICORN_LOG_FORMAT=json"], logconfig_dict=logs.logconfig_dict())
    with isolated():
        logs.GunicornLogger(cfg).info("Starting gunicorn")
    (line,) = json_lines(capsys.readouterr().err)
    assert "Starting gunicorn" == line["event"]


def test_env_flag_does_not_change_a_fixed_format(capsys):
    cfg = gunicorn_cfg(raw_env=["OTEL_GUNICORN_LOG_FORMAT=json"], logconfig_dict=logs.logconfig_dict("console"))
    with isolated():
        logs.GunicornLogger(cfg).info("Starting gunicorn")
    (line,) = capsys.readouterr().err.splitlines()
    assert "Starting gunicorn" in line and not line.startswith("{")


def test_env_flag_sets_the_format_without_a_logging_configuration(capsys):
    with isolated():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog="-", raw_env=["OTEL_GUNICORN_LOG_FORMAT=json"]))
        log.access(*wsgi_request())
    (line,) = json_lines(capsys.readouterr().out)
    assert "request" == line["event"]


def test_a_bad_env_flag_stops_gunicorn_with_one_line_then_fails_a_reload(capsys):
    """At start: one line and exit 1, like the variable. On a reload (HUP): an exception, so gunicorn keeps the
    previous logging (gunicorn >= 27) instead of the master exiting."""
    bad = gunicorn_cfg(raw_env=["OTEL_GUNICORN_LOG_FORMAT=xml"], logconfig_dict=logs.logconfig_dict())
    with isolated():
        with pytest.raises(SystemExit) as info:
            logs.GunicornLogger(bad)
        assert 1 == info.value.code
        assert [
            "otel_gunicorn: configuration error: OTEL_GUNICORN_LOG_FORMAT='xml' is not valid: expected console or json"
        ] == capsys.readouterr().err.splitlines()
        log = logs.GunicornLogger(gunicorn_cfg(logconfig_dict=logs.logconfig_dict()))
        with pytest.raises(ConfigError):
            log.setup(bad)


# ---------------------------------------------------------------- records no handler takes


def test_records_no_handler_takes_are_rendered_in_the_format(capsys):
    """After GunicornLogger's setup a record that would go to Python's last resort (a bare message) is JSON too."""
    with isolated():
        logs.GunicornLogger(gunicorn_cfg(logconfig_dict=logs.logconfig_dict("json")))
        orphan().warning("nobody handles %s", "me")
        orphan().info("below the last resort's level")
    (line,) = json_lines(capsys.readouterr().err)
    assert ("nobody handles me", "warning", "tests.orphan") == (line["event"], line["level"], line["logger"])


def test_python_warnings_are_rendered_in_the_format(capsys):
    """warnings.warn() prints two lines of text on stderr; after GunicornLogger's setup it is one JSON record."""
    with warnings.catch_warnings(), isolated():
        warnings.simplefilter("always")
        logs.GunicornLogger(gunicorn_cfg(logconfig_dict=logs.logconfig_dict("json")))
        warnings.warn("careful", UserWarning, stacklevel=1)
    (line,) = json_lines(capsys.readouterr().err)
    assert ("warning", "py.warnings") == (line["level"], line["logger"])
    assert "UserWarning: careful" in line["event"]


def test_the_applied_format_is_noted_for_the_processes_the_arbiter_starts():
    """A format fixed with logconfig_dict("json") is not in the environment the exporter process inherits."""
    with isolated():
        logs.GunicornLogger(gunicorn_cfg(logconfig_dict=logs.logconfig_dict("json")))
        assert "json" == _gunicorn_log.applied_log_format()
        logs.GunicornLogger(gunicorn_cfg(raw_env=["OTEL_GUNICORN_LOG_FORMAT=console"]))
        assert "console" == _gunicorn_log.applied_log_format()


def test_early_records_are_rendered_in_the_format_of_the_environment(monkeypatch, capsys):
    """python:otel_gunicorn.conf calls it before importing the hooks, whose SDK imports may already log."""
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", "json")
    with isolated():
        render_early_records()
        orphan().warning("early")
    (line,) = json_lines(capsys.readouterr().err)
    assert "early" == line["event"]


@pytest.mark.parametrize("value", ["console", "xml"])
def test_early_records_are_left_alone_in_console_mode_and_with_a_bad_value(monkeypatch, value):
    """Console: a bare message is a readable line. A bad value: logconfig_dict() reports it a moment later."""
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", value)
    with isolated():
        last_resort = logging.lastResort
        render_early_records()
        assert last_resort is logging.lastResort


# ---------------------------------------------------------------- --statsd-host


class Agent:
    """A statsd agent: a UDP socket on loopback."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.loggers: list = []

    def track(self, log):
        """``log``, its statsd socket closed with the agent's."""
        self.loggers.append(log)
        return log

    def close(self) -> None:
        for log in self.loggers:
            log.sock.close()
        self.sock.close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def packets(self) -> list[str]:
        found = []
        for _ in range(1000):
            try:
                found.append(self.sock.recv(65_536).decode())
            except TimeoutError:
                return found
        return found


@pytest.fixture
def agent():
    agent = Agent()
    yield agent
    agent.close()


def statsd_cfg(agent: Agent, **settings):
    return gunicorn_cfg(statsd_host=agent.address, statsd_prefix="app", dogstatsd_tags="env:test", **settings)


def test_statsd_host_makes_our_logger_gunicorns_statsd_logger_too(agent):
    with isolated():
        first, second = (agent.track(logs.GunicornLogger(statsd_cfg(agent))) for _ in range(2))
    assert isinstance(first, logs.GunicornLogger) and isinstance(first, Statsd)
    assert type(first) is type(second)
    with isolated():
        assert not isinstance(logs.GunicornLogger(gunicorn_cfg()), Statsd)


@pytest.mark.parametrize(
    "request_time",
    [wsgi_request()[3], _RequestTime(2.345)],
    ids=["timedelta", "asgi"],
)
def test_access_sends_exactly_what_gunicorns_statsd_logger_sends(agent, request_time):
    """The same request through gunicorn's Statsd and through ours: the same packets, prefix and tags included."""
    resp, req, environ, _ = wsgi_request()
    with isolated():
        agent.track(Statsd(statsd_cfg(agent))).access(resp, req, environ, request_time)
        expected = agent.packets()
        agent.track(logs.GunicornLogger(statsd_cfg(agent))).access(resp, req, environ, request_time)
    assert 3 == len(expected)
    assert expected == agent.packets()


def test_statsd_beside_the_structured_access_record(agent, capsys):
    with isolated():
        log = agent.track(
            logs.GunicornLogger(statsd_cfg(agent, accesslog="-", logconfig_dict=logs.logconfig_dict("json")))
        )
        log.access(ASGIResponseInfo(404, [], 0), None, {"REQUEST_METHOD": "GET"}, _RequestTime(0.001))
    (line,) = json_lines(capsys.readouterr().out)
    assert ("request", 404) == (line["event"], line["status"])
    assert "app.gunicorn.request.status.404:1|c|@1.0|#env:test" in agent.packets()


def test_gunicorns_log_counters_and_arbiter_gauges_are_sent(agent, capsys):
    """gunicorn.log.<level> per error/warning, and the gauges the arbiter sends through its logger (debug + extra)."""
    with isolated():
        log = agent.track(logs.GunicornLogger(statsd_cfg(agent, logconfig_dict=logs.logconfig_dict("json"))))
        log.error("worker failed")
        log.debug("2 workers", extra={"metric": "gunicorn.workers", "value": 2, "mtype": "gauge"})
    assert [
        "app.gunicorn.log.error:1|c|@1.0|#env:test",
        "app.gunicorn.workers:2|g|#env:test",
    ] == agent.packets()
    (error,) = json_lines(capsys.readouterr().err)
    assert "worker failed" == error["event"]


def test_a_subclass_of_ours_gets_statsd_too(agent):
    class Mine(logs.GunicornLogger):
        pass

    with isolated():
        log = agent.track(Mine(statsd_cfg(agent)))
        log.access(*wsgi_request())
    assert isinstance(log, Mine) and isinstance(log, Statsd)
    assert 3 == len(agent.packets())


# ---------------------------------------------------------------- the exporter process, the fork guard


def test_log_to_stderr_renders_in_the_format_once(capsys):
    """The exporter process's logging: JSON on stderr at INFO; a second call adds no second handler."""
    with isolated():
        logging.root.handlers[:] = []
        _gunicorn_log.log_to_stderr({"OTEL_GUNICORN_LOG_FORMAT": "json"})
        _gunicorn_log.log_to_stderr({"OTEL_GUNICORN_LOG_FORMAT": "json"})
        logging.getLogger("otel_gunicorn.exporter").info("OTLP export failing")
    (line,) = json_lines(capsys.readouterr().err)
    assert ("OTLP export failing", "otel_gunicorn.exporter", os.getpid()) == (
        line["event"],
        line["logger"],
        line["pid"],
    )
    assert {"timestamp", "level", "thread_id"} <= set(line)


def test_a_fork_waits_for_a_forwarded_record_being_written():
    """A fork in the middle of writing a record would leave the stream's lock held in the child (its first log line
    then blocks forever): the forwarder's writes and the fork exclude each other."""
    started, written = threading.Event(), threading.Event()

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            started.set()
            time.sleep(0.3)
            written.set()

    with isolated():
        library = logging.getLogger("otel_gunicorn")
        library.handlers[:], library.level = [], logging.NOTSET
        logging.getLogger("gunicorn.error").handlers[:] = [Slow()]
        logging.getLogger("gunicorn.error").setLevel(logging.INFO)
        _gunicorn_log.forward_to_gunicorn()
        writer = threading.Thread(target=library.warning, args=("serving metrics",))
        writer.start()
        assert started.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: only tell whether the write had finished before the fork
            os._exit(0 if written.is_set() else 1)
        _, status = os.waitpid(pid, 0)
        writer.join(5)
    assert 0 == os.waitstatus_to_exitcode(status)
