"""A worker's span and log exports: outages logged once, console output one line per item, exit flushes bounded."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_gunicorn import _otlp
from otel_gunicorn._config import Config
from otel_gunicorn._worker import runtime
from otel_gunicorn._worker.log_export import EXPORTED_LOGGERS, build_log_export, one_line_record
from otel_gunicorn._worker.tracing import one_line_span
from tests.unit.records import Records

SDK_TRACE_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
#: the SDK (1.45) deprecates its LoggingHandler, which log export is built on, in favour of a contrib package's
SDK_LOGGING_HANDLER = pytest.mark.filterwarnings("ignore:`LoggingHandler` in `opentelemetry-sdk` is deprecated")


class Scripted(SpanExporter):
    """Answers each export with the next of ``results``; logs through the SDK exporter's logger as it goes."""

    def __init__(self, *results: SpanExportResult | Exception) -> None:
        self.results = list(results)

    def export(self, spans):
        result = self.results.pop(0)
        logging.getLogger(SDK_TRACE_LOGGER).warning("Transient error %s encountered, retrying in 1.00s.", "refused")
        if isinstance(result, Exception):
            raise result
        return result

    def shutdown(self) -> None:
        pass


@pytest.fixture
def root_records() -> Iterator[Records]:
    """Everything that reaches the root logger's handlers, whoever logged it."""
    handler = Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)


def warnings_of(records: Records) -> list[str]:
    return [message for level, message in records.messages if level == logging.WARNING]


OK, FAIL = SpanExportResult.SUCCESS, SpanExportResult.FAILURE


def test_an_outage_is_one_warning_and_its_end_another(logged: Records) -> None:
    """Three failed batches, a good one, two failed: failing, recovered, failing — nothing per batch."""
    exporter = _otlp.ObservedSpanExporter(Scripted(FAIL, FAIL, FAIL, OK, FAIL, FAIL))

    results = [exporter.export([]) for _ in range(6)]

    assert [FAIL, FAIL, FAIL, OK, FAIL, FAIL] == results
    messages = warnings_of(logged)
    assert 3 == len(messages), messages
    assert ["failing", "recovered after 3 failed batches", "failing"] == [
        "failing" if "export failing" in m else m.split("export ")[1] for m in messages
    ]


def test_the_sdk_retry_lines_stay_out_of_the_log_and_the_first_is_quoted(root_records: Records) -> None:
    """What the SDK exporter logs inside an export reaches no handler; the outage warning quotes its first line."""
    exporter = _otlp.ObservedSpanExporter(Scripted(FAIL, FAIL))

    exporter.export([])
    exporter.export([])

    assert ["otel_gunicorn: OTLP span export failing"] == [m.split(";")[0] for m in warnings_of(root_records)]
    assert warnings_of(root_records)[0].endswith(
        "The exporter said: Transient error refused encountered, retrying in 1.00s."
    )


def test_the_sdk_exporters_own_lines_outside_an_export_still_reach_the_log(root_records: Records) -> None:
    """Only lines logged inside a wrapped export are held back: a certificate that cannot be read at construction,
    say, is still shown."""
    _otlp.ObservedSpanExporter(Scripted())

    logging.getLogger(SDK_TRACE_LOGGER).error("Failed to read file: /nonexistent/ca.pem")

    assert [(logging.ERROR, "Failed to read file: /nonexistent/ca.pem")] == root_records.messages


def test_an_exporter_that_raises_is_a_failed_batch_not_a_dead_thread(logged: Records) -> None:
    exporter = _otlp.ObservedSpanExporter(Scripted(RuntimeError("encoder bug")))

    assert FAIL == exporter.export([])
    assert "The exporter said: RuntimeError('encoder bug')" in warnings_of(logged)[0]


def test_log_record_outages_are_logged_the_same_way(logged: Records) -> None:
    class Failing(LogRecordExporter):
        def export(self, batch):
            return LogRecordExportResult.FAILURE

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    exporter = _otlp.ObservedLogExporter(Failing())

    assert [LogRecordExportResult.FAILURE] * 2 == [exporter.export([]), exporter.export([])]
    assert 1 == len(warnings_of(logged)) and "OTLP log record export failing" in warnings_of(logged)[0]


def test_the_real_sdk_exporter_to_a_closed_port_logs_once(root_records: Records) -> None:
    """The SDK's own OTLP/HTTP exporter, retrying against a closed port: one warning for two failed batches, and not
    one line from the SDK (before: a ``Transient error … retrying`` and a ``Failed to export`` per batch)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    # 1.5 s: one retry (after about 1 s) per batch, so the SDK logs a retry line and a final failure for each
    exporter = _otlp.ObservedSpanExporter(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1.5))
    provider = TracerProvider()
    spans: list[ReadableSpan] = []
    for name in ("first", "second"):
        with provider.get_tracer("test").start_as_current_span(name) as span:
            assert isinstance(span, ReadableSpan)  # the SDK's span; the API's tracer types it as trace.Span
            spans.append(span)

    exporter.export(spans[:1])
    exporter.export(spans[1:])

    messages = [message for level, message in root_records.messages if level >= logging.WARNING]
    assert 1 == len(messages), messages
    assert "OTLP span export failing" in messages[0] and "Connection refused" in messages[0]


# ---------------------------------------------------------------- console output


def test_console_spans_are_one_json_object_per_line() -> None:
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("GET", attributes={"url.path": "/a\nb"}) as span:
        pass
    assert isinstance(span, ReadableSpan)  # the SDK's span; the API's tracer types it as trace.Span

    text = one_line_span(span)

    assert (1, "GET") == (text.count("\n"), json.loads(text)["name"])
    assert text.endswith("\n")


@SDK_LOGGING_HANDLER
def test_console_log_records_are_one_json_object_per_line() -> None:
    captured: list[str] = []

    class Capture(LogRecordExporter):
        def export(self, batch):
            captured.extend(one_line_record(record) for record in batch)
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(Capture()))
    logger = logging.getLogger("tests.console")
    handler = LoggingHandler(logger_provider=provider)
    logger.addHandler(handler)
    try:
        logger.warning("two\nlines")
    finally:
        logger.removeHandler(handler)

    assert 1 == len(captured)
    assert (1, "two\nlines") == (captured[0].count("\n"), json.loads(captured[0])["body"])


# ---------------------------------------------------------------- bounded exit


def test_flushes_still_running_at_the_deadline_are_abandoned_side_by_side() -> None:
    """Two flushes that never end and one that does: all three run at once, the call returns at the deadline and
    names the two it gave up on."""
    never = threading.Event()
    started = time.monotonic()

    late = runtime._all_within({"spans": never.wait, "log records": never.wait, "quick": lambda: None}, started + 0.3)

    elapsed = time.monotonic() - started
    never.set()
    assert (["spans", "log records"], True) == (late, 0.3 <= elapsed < 0.6)


def test_a_flush_that_raises_is_logged_and_does_not_stop_the_exit(logged: Records) -> None:
    def broken() -> None:
        raise RuntimeError("exporter bug")

    assert [] == runtime._all_within({"spans": broken}, time.monotonic() + 1)
    assert any("flushing telemetry of worker" in m for m in warnings_of(logged))


@SDK_LOGGING_HANDLER
def test_log_export_shutdown_detaches_its_handler_first() -> None:
    """Records logged after the worker stopped exporting go nowhere near the shut-down provider (which would say,
    for each, that it is ignoring it)."""
    export = build_log_export(Config(logs_exporter="console"), LoggerProvider().resource)
    assert export is not None
    assert all(export.handler in logging.getLogger(name).handlers for name in EXPORTED_LOGGERS)

    export.shutdown()

    assert not any(export.handler in logging.getLogger(name).handlers for name in EXPORTED_LOGGERS)
