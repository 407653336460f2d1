"""Structured logs: the processors, the logging configuration, the access log and the structlog-native path."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.config
import sys
import types
from collections.abc import Iterator

import gunicorn.config
import pytest
import structlog
from gunicorn.asgi.protocol import ASGIResponseInfo, _RequestTime
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_gunicorn import _gunicorn_log, logs
from otel_gunicorn._config import ConfigError
from otel_gunicorn._handoff import SLOT_ATTR, slot_of
from otel_gunicorn._logs import processors
from otel_gunicorn._logs.access import access_fields

TRACE_KEYS = {"trace_id", "span_id", "trace_flags"}
ACCESS_KEYS = {
    "method",
    "path",
    "query",
    "status",
    "bytes",
    "duration",
    "remote_addr",
    "user_agent",
    "referer",
    "protocol",
}


@pytest.fixture(autouse=True)
def _no_slot_no_structlog() -> Iterator[None]:
    logs.set_worker_slot(None)
    yield
    logs.set_worker_slot(None)
    structlog.reset_defaults()


@contextlib.contextmanager
def preserved_logging() -> Iterator[None]:
    """Undo every logging change made inside the block (used inside the test body, so pytest's handlers survive)."""
    manager = logging.root.manager
    existing = [logging.root] + [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    saved = {lg: (lg.handlers[:], lg.level, lg.propagate, lg.disabled) for lg in existing}
    last_resort = logging.lastResort  # GunicornLogger renders the records no handler takes, and warnings
    try:
        yield
    finally:
        logging.lastResort = last_resort
        logging.captureWarnings(False)
        for lg in [logging.root] + [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]:
            handlers, level, propagate, disabled = saved.get(lg, ([], logging.NOTSET, True, False))
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


def tracer(**kwargs) -> trace.Tracer:
    return TracerProvider(**kwargs).get_tracer("tests.logs")


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- add_trace_context


def test_trace_context_inside_a_span_adds_the_spans_ids():
    """Inside a span, trace_id (32 hex), span_id (16 hex) and trace_flags (2 hex) are the span's."""
    with tracer().start_as_current_span("request") as span:
        event = logs.add_trace_context(None, "info", {"event": "x"})
        context = span.get_span_context()
    expected = {
        "event": "x",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "trace_flags": f"{context.trace_flags:02x}",
    }
    assert expected == event


def test_trace_context_outside_a_span_adds_nothing():
    """Outside any span the event is left as it was."""
    assert {"event": "x"} == logs.add_trace_context(None, "info", {"event": "x"})


def test_trace_context_of_an_unsampled_span_is_still_added():
    """An unsampled span has a valid context: its ids are added, with the sampled bit of trace_flags clear."""
    with tracer(sampler=ALWAYS_OFF).start_as_current_span("request") as span:
        event = logs.add_trace_context(None, "info", {})
    assert f"{span.get_span_context().trace_id:032x}" == event["trace_id"]
    assert 0 == int(event["trace_flags"], 16) & trace.TraceFlags.SAMPLED


def test_trace_context_of_an_invalid_span_adds_nothing():
    """The invalid span context (what the API gives without an SDK) adds nothing."""
    with trace.use_span(trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)):
        assert {} == logs.add_trace_context(None, "info", {})


def test_trace_context_keeps_existing_keys():
    """A trace_id the caller passed wins over the current span's."""
    with tracer().start_as_current_span("request"):
        event = logs.add_trace_context(None, "info", {"trace_id": "mine"})
    assert "mine" == event["trace_id"]
    assert TRACE_KEYS == set(event)


def test_trace_context_never_raises(monkeypatch):
    """A failing OpenTelemetry API leaves the event unchanged instead of breaking the log call."""

    def broken():
        raise RuntimeError("broken")

    monkeypatch.setattr(processors.trace, "get_current_span", broken)
    assert {"event": "x"} == logs.add_trace_context(None, "info", {"event": "x"})


# ---------------------------------------------------------------- add_process_info


def test_process_info_without_a_slot_has_pid_and_thread_only(monkeypatch):
    """Outside a worker (no slot set) the event gets pid and thread_id, and no slot key."""
    monkeypatch.setattr(_gunicorn_log.os, "getpid", lambda: 4242)
    monkeypatch.setattr(_gunicorn_log.threading, "get_ident", lambda: 7)
    assert {"pid": 4242, "thread_id": 7} == logs.add_process_info(None, "info", {})


def test_process_info_in_a_worker_adds_the_slot():
    """After set_worker_slot(3) every event carries gunicorn.worker.slot 3."""
    logs.set_worker_slot(3)
    assert 3 == logs.add_process_info(None, "info", {})["gunicorn.worker.slot"]


def test_process_info_of_a_stdlib_record_comes_from_the_record():
    """For a foreign record, pid and thread are those recorded with it, not the formatting thread's."""
    record = types.SimpleNamespace(process=11, thread=22)
    event = logs.add_process_info(None, "info", {"_record": record})
    assert (11, 22) == (event["pid"], event["thread_id"])


def test_process_info_keeps_existing_keys():
    """A pid the caller passed wins."""
    logs.set_worker_slot(1)
    event = logs.add_process_info(None, "info", {"pid": "mine", "gunicorn.worker.slot": "mine"})
    assert ("mine", "mine") == (event["pid"], event["gunicorn.worker.slot"])


def test_process_info_never_raises():
    """A record that explodes on attribute access leaves the event unchanged."""

    class Exploding:
        def __getattr__(self, name):
            raise RuntimeError(name)

    event = {"_record": Exploding()}
    assert event == logs.add_process_info(None, "info", dict(event))


@pytest.mark.parametrize("slot", [True, "1", 1.0])
def test_set_worker_slot_rejects_non_integers(slot):
    """Only an int (not a bool) or None is a slot."""
    with pytest.raises(TypeError):
        logs.set_worker_slot(slot)


def test_slot_of_reads_the_attribute_the_arbiter_sets():
    """slot_of() reads SLOT_ATTR from gunicorn's Worker object; None when absent."""
    worker = types.SimpleNamespace(**{SLOT_ATTR: 2})
    assert (2, None) == (slot_of(worker), slot_of(object()))


# ---------------------------------------------------------------- formats and logconfig_dict


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, "console"), ("", "console"), ("json", "json"), (" JSON ", "json")]
)
def test_log_format_from_env(raw, expected):
    """Unset or empty means console; values are trimmed and case-insensitive."""
    environ = {} if raw is None else {"OTEL_GUNICORN_LOG_FORMAT": raw}
    assert expected == logs.log_format_from_env(environ)


def test_bad_log_format_raises_config_error_naming_everything():
    """A bad value raises ConfigError with the variable, the value and the accepted values."""
    with pytest.raises(ConfigError) as info:
        logs.log_format_from_env({"OTEL_GUNICORN_LOG_FORMAT": "xml"})
    expected = ("OTEL_GUNICORN_LOG_FORMAT", "xml", "console or json")
    assert expected == (info.value.variable, info.value.value, info.value.accepted)


def test_logconfig_dict_with_a_bad_env_value_exits_with_one_line(monkeypatch, capsys):
    """In a gunicorn config file a bad OTEL_GUNICORN_LOG_FORMAT stops the arbiter with one line, no traceback."""
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", "xml")
    with pytest.raises(SystemExit) as info:
        logs.logconfig_dict()
    assert 1 == info.value.code
    assert [
        "otel_gunicorn: configuration error: OTEL_GUNICORN_LOG_FORMAT='xml' is not valid: expected console or json"
    ] == capsys.readouterr().err.splitlines()


def test_logconfig_dict_rejects_a_bad_argument():
    """An unknown log_format argument is a programming error: ValueError."""
    with pytest.raises(ValueError, match="log_format='xml'"):
        logs.logconfig_dict("xml")


def test_logconfig_dict_is_plain_data():
    """The dict holds only plain data, so it can be printed, edited or dumped for logconfig_json."""
    config = logs.logconfig_dict("json")
    assert config == json.loads(json.dumps(config))


def test_logconfig_dict_passes_dictconfig_and_stops_propagation():
    """dictConfig accepts it; gunicorn's loggers do not propagate to root (no duplicates)."""
    with preserved_logging():
        logging.config.dictConfig(logs.logconfig_dict("json"))
        propagate = [logging.getLogger(name).propagate for name in ("gunicorn.error", "gunicorn.access")]
    assert [False, False] == propagate


def test_logconfig_dict_leaves_gunicorn_error_level_to_gunicorn():
    """No level for gunicorn.error: --log-level (set by gunicorn before dictConfig) keeps deciding."""
    with preserved_logging():
        logging.getLogger("gunicorn.error").setLevel(logging.DEBUG)
        logging.config.dictConfig(logs.logconfig_dict("json"))
        level = logging.getLogger("gunicorn.error").level
    assert logging.DEBUG == level


def test_json_mode_renders_an_app_record_as_one_object(capsys):
    """A stdlib record from logger "app" becomes one JSON object with event, level, logger and timestamp."""
    with preserved_logging():
        logging.config.dictConfig(logs.logconfig_dict("json"))
        logging.getLogger("app").info("in.app %s", "now")
    (line,) = json_lines(capsys.readouterr().err)
    assert ("in.app now", "info", "app") == (line["event"], line["level"], line["logger"])
    assert line["timestamp"].endswith("Z")
    assert not TRACE_KEYS & set(line)


def test_json_mode_inside_a_span_carries_the_trace_ids(capsys):
    """The same record written inside a span carries that span's ids."""
    with preserved_logging(), tracer().start_as_current_span("request") as span:
        logging.config.dictConfig(logs.logconfig_dict("json"))
        logging.getLogger("app").info("in.app")
    (line,) = json_lines(capsys.readouterr().err)
    assert f"{span.get_span_context().trace_id:032x}" == line["trace_id"]
    assert f"{span.get_span_context().span_id:016x}" == line["span_id"]


def test_json_mode_renders_exceptions_as_text(capsys):
    """logger.exception() yields a JSON object whose exception key holds the traceback."""
    with preserved_logging():
        logging.config.dictConfig(logs.logconfig_dict("json"))
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            logging.getLogger("app").exception("failed")
    (line,) = json_lines(capsys.readouterr().err)
    assert "ZeroDivisionError: boom" in line["exception"]


def test_applying_the_config_twice_writes_each_record_once(capsys):
    """gunicorn re-applies logconfig_dict on HUP; records are still written once."""
    with preserved_logging():
        config = logs.logconfig_dict("json")
        logging.config.dictConfig(config)
        logging.config.dictConfig(config)
        logging.getLogger("app").info("once")
        logging.getLogger("gunicorn.error").info("once")
    assert 2 == len(json_lines(capsys.readouterr().err))


def test_console_mode_is_a_readable_line_without_colours_off_a_terminal(capsys):
    """Console mode: timestamp, level, event, logger and key=value pairs; no ANSI codes when stderr is not a tty."""
    with preserved_logging():
        logging.config.dictConfig(logs.logconfig_dict("console"))
        logging.getLogger("app").info("in.app", extra={"user": "ann"})
    (line,) = capsys.readouterr().err.splitlines()
    assert "[info" in line and "in.app" in line and "[app]" in line and "user=ann" in line
    assert "\x1b[" not in line


# ---------------------------------------------------------------- no secrets in tracebacks

#: what the failing frame holds; built from parts, so that no source line a traceback quotes contains them
SECRETS = ("s3cr3t-" + "token", "Bearer " + "abc123")


def _failing_with_secrets_in_its_frame() -> None:
    api_key = SECRETS[0]
    auth = SECRETS[1]
    raise RuntimeError(f"upstream refused ({len(api_key) + len(auth)} bytes of credentials)")


def _exception_record() -> logging.LogRecord:
    try:
        _failing_with_secrets_in_its_frame()
    except RuntimeError:
        return logging.LogRecord("app", logging.ERROR, __file__, 1, "request failed", (), sys.exc_info())
    raise AssertionError("unreachable")


@pytest.mark.parametrize("rich_installed", [True, False], ids=["rich", "no-rich"])
@pytest.mark.parametrize(("log_format", "colors"), [("console", False), ("console", True), ("json", False)])
def test_a_logged_traceback_never_shows_the_frames_local_variables(monkeypatch, log_format, colors, rich_installed):
    """The traceback is there (exception, failing function), the values of its frames' variables are not: rich
    would print them by default (structlog's console renderer with rich installed), so would better-exceptions."""
    if not rich_installed:
        monkeypatch.setitem(sys.modules, "rich.traceback", None)  # `import rich.traceback` raises ImportError
    text = _gunicorn_log.record_formatter(log_format, colors=colors).format(_exception_record())
    assert "RuntimeError" in text and "_failing_with_secrets_in_its_frame" in text
    for secret in SECRETS:
        assert secret not in text, text


def test_the_console_traceback_is_richs_where_rich_is_installed_else_plain(monkeypatch):
    """Rich's readable traceback is kept (without locals); without rich, structlog's plain one, never its default
    (which would be better-exceptions' where that is installed)."""
    formatter = _gunicorn_log.traceback_formatter(colors=False)
    assert isinstance(formatter, structlog.dev.RichTracebackFormatter) and not formatter.show_locals
    assert formatter.color_system is None
    coloured = _gunicorn_log.traceback_formatter(colors=True)
    assert isinstance(coloured, structlog.dev.RichTracebackFormatter) and "truecolor" == coloured.color_system
    monkeypatch.setitem(sys.modules, "rich.traceback", None)
    assert structlog.dev.plain_traceback is _gunicorn_log.traceback_formatter(colors=True)


# ---------------------------------------------------------------- access fields


def test_access_fields_of_a_wsgi_request():
    """sync/gthread: fields from gunicorn's WSGI response, request and environ; SCRIPT_NAME kept in the path."""
    resp = types.SimpleNamespace(status="404 Not Found", status_code=404, sent=42, headers=[])
    req = types.SimpleNamespace(method="GET", path="/api/items", query="a=1", version=(1, 1), headers=[])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/items?a=1",
        "SCRIPT_NAME": "/api",
        "PATH_INFO": "/items",
        "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_USER_AGENT": "curl/8",
        "HTTP_REFERER": "http://example.test/",
    }
    expected = {
        "method": "GET",
        "path": "/api/items",
        "query": "a=1",
        "status": 404,
        "bytes": 42,
        "duration": 1.5,
        "remote_addr": "10.0.0.1",
        "user_agent": "curl/8",
        "referer": "http://example.test/",
        "protocol": "HTTP/1.1",
    }
    assert expected == access_fields(resp, req, environ, datetime.timedelta(seconds=1, microseconds=500000))


def test_access_fields_of_an_asgi_request():
    """asgi: gunicorn's own ASGIResponseInfo (int status), _RequestTime and the dict it builds for logging."""
    resp = ASGIResponseInfo(201, [(b"content-length", b"3")], 3)
    req = types.SimpleNamespace(method="POST", path="/p", query="", version=(2, 0), headers=[])
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": "/p",
        "PATH_INFO": "/p",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/2",
        "REMOTE_ADDR": "::1",
    }
    fields = access_fields(resp, req, environ, _RequestTime(0.25))
    expected = {"method": "POST", "path": "/p", "query": "", "status": 201, "bytes": 3, "duration": 0.25}
    assert expected == {k: fields[k] for k in expected}
    assert ("HTTP/2", "::1", None, None) == (
        fields["protocol"],
        fields["remote_addr"],
        fields["user_agent"],
        fields["referer"],
    )


def test_access_fields_of_a_gevent_pywsgi_request():
    """gevent's pywsgi worker passes a string status without status_code and the request headers as req."""
    resp = types.SimpleNamespace(status="200 OK", headers=[], sent=None)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.0"}
    fields = access_fields(resp, [("HOST", "x")], environ, datetime.timedelta(0))
    assert (200, None, "", "HTTP/1.0") == (fields["status"], fields["bytes"], fields["query"], fields["protocol"])


@pytest.mark.parametrize("remote_addr", ["", "-"])
def test_access_fields_of_a_peer_without_address(remote_addr):
    """On a unix socket gunicorn writes "" (WSGI) or "-" (asgi) as REMOTE_ADDR; the field is null."""
    fields = access_fields(types.SimpleNamespace(status=200), None, {"REMOTE_ADDR": remote_addr}, None)
    assert fields["remote_addr"] is None


def test_access_fields_fall_back_to_the_request_object():
    """Without an environ the request's own method, path, query and version are used."""
    req = types.SimpleNamespace(method="GET", path="/x", query="q", version=(1, 0))
    fields = access_fields(types.SimpleNamespace(status=None), req, None, None)
    expected = {"method": "GET", "path": "/x", "query": "q", "protocol": "HTTP/1.0", "status": None, "duration": None}
    assert expected == {k: fields[k] for k in expected}


# ---------------------------------------------------------------- GunicornLogger


def gunicorn_cfg(**settings) -> gunicorn.config.Config:
    cfg = gunicorn.config.Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def wsgi_request() -> tuple:
    resp = types.SimpleNamespace(status="200 OK", status_code=200, sent=3, headers=[("Content-Length", "3")])
    req = types.SimpleNamespace(method="GET", path="/hello", query="name=x", version=(1, 1), headers=[])
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/hello?name=x",
        "PATH_INFO": "/hello",
        "QUERY_STRING": "name=x",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": "tests",
    }
    return resp, req, environ, datetime.timedelta(microseconds=1500)


def test_gunicorn_logger_is_a_gunicorn_logger_class():
    """gunicorn loads it by dotted name as logger_class."""
    assert logs.GunicornLogger is gunicorn_cfg(logger_class="otel_gunicorn.logs.GunicornLogger").logger_class


def test_access_emits_one_structured_json_event(capsys):
    """With accesslog '-' and logconfig_dict('json'), one request is one JSON object with every field, on stdout."""
    with preserved_logging():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog="-", logconfig_dict=logs.logconfig_dict("json")))
        log.access(*wsgi_request())
    (line,) = json_lines(capsys.readouterr().out)
    expected = {
        "event": "request",
        "logger": "gunicorn.access",
        "level": "info",
        "method": "GET",
        "path": "/hello",
        "query": "name=x",
        "status": 200,
        "bytes": 3,
        "duration": 0.0015,
        "remote_addr": "127.0.0.1",
        "user_agent": "tests",
        "referer": None,
        "protocol": "HTTP/1.1",
    }
    assert expected == {k: line[k] for k in expected}


def test_access_inside_a_span_carries_the_trace_ids(capsys):
    """The access log is written inside the request's span, so its line has the span's trace id."""
    with preserved_logging(), tracer().start_as_current_span("request") as span:
        log = logs.GunicornLogger(gunicorn_cfg(accesslog="-", logconfig_dict=logs.logconfig_dict("json")))
        log.access(*wsgi_request())
    (line,) = json_lines(capsys.readouterr().out)
    assert f"{span.get_span_context().trace_id:032x}" == line["trace_id"]


def test_access_is_silent_when_gunicorn_would_be(capsys):
    """No accesslog and no logging configuration: gunicorn logs no access, and neither do we."""
    with preserved_logging():
        log = logs.GunicornLogger(gunicorn_cfg())
        records: list[logging.LogRecord] = []
        log.access_log.addHandler(_Collect(records))
        log.access(*wsgi_request())
    assert [] == records


def test_without_logconfig_gunicorns_own_handlers_get_the_format(monkeypatch, capsys):
    """logger_class alone: gunicorn's --access-logfile handler renders the event in OTEL_GUNICORN_LOG_FORMAT."""
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", "json")
    with preserved_logging():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog="-"))
        log.access(*wsgi_request())
        log.info("Booting worker")
    captured = capsys.readouterr()
    (access,) = json_lines(captured.out)
    (error,) = json_lines(captured.err)
    assert ("request", 200) == (access["event"], access["status"])
    assert ("Booting worker", "gunicorn.error") == (error["event"], error["logger"])


def test_access_never_fails_the_request(capsys):
    """A response that breaks the field extraction is reported on the error log; access() returns normally."""

    class Broken:
        def __getattr__(self, name):
            raise RuntimeError(name)

    _, req, environ, request_time = wsgi_request()
    with preserved_logging():
        log = logs.GunicornLogger(gunicorn_cfg(accesslog="-", logconfig_dict=logs.logconfig_dict("json")))
        log.access(Broken(), req, environ, request_time)
    captured = capsys.readouterr()
    (error,) = json_lines(captured.err)
    assert "" == captured.out
    assert "error" == error["level"]
    assert "RuntimeError: status_code" in error["exception"]


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# ---------------------------------------------------------------- structlog-native applications


def test_structlog_native_events_match_the_stdlib_ones(capsys):
    """structlog.get_logger().info() after configure_structlog() renders with the same keys as a stdlib record."""
    with preserved_logging():
        logging.config.dictConfig(logs.logconfig_dict("json"))
        logs.configure_structlog()
        with tracer().start_as_current_span("request"):
            structlog.get_logger("app").info("native", user="ann")
            logging.getLogger("app").info("stdlib", extra={"user": "ann"})
    native, stdlib = json_lines(capsys.readouterr().err)
    assert set(stdlib) - {"event"} == set(native) - {"event"}
    assert ("native", "app", "ann") == (native["event"], native["logger"], native["user"])
    assert stdlib["trace_id"] == native["trace_id"]


def test_configure_structlog_adds_a_root_handler_only_when_none_exists(capsys):
    """Outside gunicorn's logconfig_dict it adds one stderr handler, as basicConfig would; never a second one."""
    with preserved_logging():
        logging.root.handlers[:] = []
        logs.configure_structlog("json")
        logs.configure_structlog("json")
        handlers = len(logging.root.handlers)
        structlog.get_logger("app").info("native")
    (line,) = json_lines(capsys.readouterr().err)
    assert (1, "native") == (handlers, line["event"])


def test_configure_structlog_rejects_a_bad_env_value(monkeypatch):
    """In the application a bad OTEL_GUNICORN_LOG_FORMAT raises ConfigError (no exit from library code)."""
    monkeypatch.setenv("OTEL_GUNICORN_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError):
        logs.configure_structlog()


# ---------------------------------------------------------------- public surface


def test_logs_all_is_sorted():
    """__all__ stays sorted, as the style asks."""
    assert sorted(logs.__all__) == logs.__all__


def test_a_request_without_a_span_gets_ids_of_its_own_for_its_lines():
    """Tracing off, no traceparent: every line the request logs shares one trace id, flags 00; the next request
    has another, and outside a request nothing is added."""
    from otel_gunicorn import _request_ids
    from otel_gunicorn._logs.processors import add_trace_context

    assert {} == add_trace_context(None, "info", {})
    seen = []
    for _request in range(2):
        token = _request_ids.begin()
        first, second = add_trace_context(None, "info", {}), add_trace_context(None, "info", {})
        _request_ids.end(token)
        assert first == second and "00" == first["trace_flags"]
        seen.append(first["trace_id"])
    assert len(set(seen)) == 2
    assert {} == add_trace_context(None, "info", {})
