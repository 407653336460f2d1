"""OTLP log export of structlog events and stdlib records: the event's own keys as attributes, valid values only, and
not one warning of the SDK's about them (before: ``_logger``/``_name`` exported with every structlog line, each
answered by a WARN record "Invalid type ... for attribute value")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from otel_gunicorn import logs
from otel_gunicorn._logs.formats import common_processors
from otel_gunicorn._worker.log_export import LogExport
from otel_gunicorn._worker.log_records import NOT_ATTRIBUTES, exportable
from tests.unit.records import Records

pytestmark = pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk` is deprecated")

CODE_KEYS = {"code.file.path", "code.function.name", "code.line.number"}
#: a logger first created after configure_structlog, so structlog's own class (which finds the caller's line)
APP = "tests.log_records.app"


class Opaque:
    """A value the log data model has no type for."""

    def __str__(self) -> str:
        return "opaque!"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.fixture
def exported() -> Iterator[InMemoryLogRecordExporter]:
    """The worker's log export (as OTEL_LOGS_EXPORTER builds it) into memory, the :data:`APP` logger at INFO, structlog
    configured by ``configure_structlog``; undone afterwards."""
    provider = LoggerProvider()
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    export = LogExport(provider)
    logs.configure_structlog("json")
    app = logging.getLogger(APP)
    app.setLevel(logging.INFO)
    try:
        yield exporter
    finally:
        export.shutdown()
        app.setLevel(logging.NOTSET)
        structlog.reset_defaults()


@pytest.fixture
def sdk_warnings() -> Iterator[Records]:
    """What the OpenTelemetry API and SDK log about attributes (the "Invalid type" warnings)."""
    handler = Records()
    logger = logging.getLogger("opentelemetry")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_a_structlog_event_is_exported_with_its_own_keys_as_attributes(exported, sdk_warnings):
    """Body: the event; attributes: its keys (lists as arrays, mappings as maps, anything else as its str(), a key
    that names a LogRecord field prefixed ``structlog.``) and the SDK's code.*; never structlog's bookkeeping
    (``_logger``, ``_name``) nor the keys our processors add; and no warning from the SDK."""
    span = TracerProvider().get_tracer("tests").start_span("request")
    with trace.use_span(span, end_on_exit=True):
        structlog.get_logger(APP).info(
            "paid", order=42, price=9.5, ok=True, tags=["a", "b"], user={"id": 1}, thing=Opaque(), name="bob"
        )
    (record,) = exported.get_finished_logs()
    attributes = dict(record.log_record.attributes or {})
    assert ("paid", "INFO", APP) == (
        record.log_record.body,
        record.log_record.severity_text,
        record.instrumentation_scope.name,
    )
    assert span.get_span_context().trace_id == record.log_record.trace_id  # in the record's own field
    expected = {
        "order": 42,
        "price": 9.5,
        "ok": True,
        "tags": ("a", "b"),
        "user": {"id": 1},
        "thing": "opaque!",
        "structlog.name": "bob",
    }
    assert expected == {k: v for k, v in attributes.items() if k not in CODE_KEYS}
    assert __file__ == attributes["code.file.path"]  # the caller's line, as for stdlib records
    assert [] == sdk_warnings.messages


def test_a_structlog_exception_is_exported_as_exception_attributes(exported, sdk_warnings):
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        structlog.get_logger(APP).exception("failed", order=7)
    (record,) = exported.get_finished_logs()
    attributes = dict(record.log_record.attributes or {})
    assert ("failed", "ERROR") == (record.log_record.body, record.log_record.severity_text)
    assert (7, "ZeroDivisionError", "boom") == (
        attributes["order"],
        attributes["exception.type"],
        attributes["exception.message"],
    )
    assert "ZeroDivisionError: boom" in str(attributes["exception.stacktrace"])
    assert "exc_info" not in attributes
    assert [] == sdk_warnings.messages


def test_a_stdlib_records_extra_keeps_exporting_and_an_invalid_value_becomes_a_string(exported, sdk_warnings):
    """``extra=`` keys stay attributes; one the data model cannot carry becomes its str() instead of a warning; one
    whose str() fails is left out, never the record."""
    app = logging.getLogger(APP)
    app.info("plain", extra={"order": 42, "referer": None})
    app.info("odd", extra={"thing": Opaque(), "broken": Unprintable(), "ids": {3}})
    plain, odd = (
        {k: v for k, v in (r.log_record.attributes or {}).items() if k not in CODE_KEYS}
        for r in exported.get_finished_logs()
    )
    assert {"order": 42, "referer": None} == plain
    assert {"thing": "opaque!", "ids": (3,)} == odd
    assert [] == sdk_warnings.messages


def test_the_record_other_handlers_see_is_not_changed():
    """exportable() copies: the stream handlers format the same record object after the SDK's handler."""
    event = {"event": "paid", "order": 42, "level": "info"}
    record = logging.LogRecord("app", logging.INFO, __file__, 1, event, (), None)
    record.__dict__.update(_logger=object(), _name="info")
    copy = exportable(record)
    assert copy is not record and event is record.msg and "_logger" in vars(record)
    assert ("paid", 42, "order") == (copy.msg, copy.order, "order")  # type: ignore[attr-defined]
    stdlib = logging.LogRecord("app", logging.INFO, __file__, 1, "plain", (), None)
    assert stdlib is exportable(stdlib)  # nothing to clean: no copy


def test_every_key_our_processors_add_is_left_out_of_the_attributes():
    """The keys the formatter's processors add (level, logger, timestamp, trace ids, pid, thread, slot) are carried
    by the exported record's own fields or, as for stdlib records, not at all: the exclusion list knows each."""
    logs.set_worker_slot(3)
    try:
        with trace.use_span(TracerProvider().get_tracer("tests").start_span("request"), end_on_exit=True):
            event: dict[str, Any] = {"event": "x"}
            for processor in common_processors():
                event = processor(logging.getLogger("app"), "info", event)  # type: ignore[assignment]
    finally:
        logs.set_worker_slot(None)
    assert set(event) <= NOT_ATTRIBUTES


def test_a_structlog_event_through_opentelemetry_instruments_handler_is_exported_cleanly(sdk_warnings):
    """Under ``OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true`` the distro's plain ``LoggingHandler`` on root is
    reused (not replaced): its records are cleaned the same way, so a structlog event has its own keys and no
    structlog bookkeeping, and the SDK warns about nothing."""
    provider = LoggerProvider()
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    distros = LoggingHandler(logger_provider=provider)  # what the distro's configurator puts on root
    root = logging.getLogger()
    root.addHandler(distros)
    export = LogExport(provider, owned=False)
    logs.configure_structlog("json")
    app = logging.getLogger(APP)
    app.setLevel(logging.INFO)
    try:
        structlog.get_logger(APP).info("paid", order=42, thing=Opaque())
    finally:
        export.shutdown()
        root.removeHandler(distros)
        app.setLevel(logging.NOTSET)
        structlog.reset_defaults()
    (record,) = exporter.get_finished_logs()
    attributes = {k: v for k, v in (record.log_record.attributes or {}).items() if k not in CODE_KEYS}
    assert (export.handler, "paid", {"order": 42, "thing": "opaque!"}) == (distros, record.log_record.body, attributes)
    assert [] == sdk_warnings.messages
