"""OTLP exporters of the OpenTelemetry SDK, chosen by protocol: ``http/protobuf`` or ``grpc``.

Endpoint, headers, timeout, compression and certificates are left to the exporters, which read the standard
``OTEL_EXPORTER_OTLP_*`` variables themselves. Imported lazily: grpc is heavy, and must only ever be loaded in a
process that will not fork afterwards (a worker, or the arbiter's exporter process — never the arbiter itself).

A worker's span and log exporters are wrapped (:class:`ObservedSpanExporter`, :class:`ObservedLogExporter`) so that
an outage is logged once when it starts and once when it ends, as ``docs/failure-modes.md`` promises: the SDK
exporters log every failed attempt of every batch, and retry with backoff, so one outage would otherwise print a
line every few seconds from every worker. Only the lines the SDK logs on a thread inside a wrapped export are held
back, the first of them (it names the error) kept as the reason the outage warning quotes; what the SDK logs
elsewhere (a certificate that cannot be read while the exporter is built) still reaches the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_gunicorn._otel_compat import LogRecordExporter, LogRecordExportResult, otlp_log_exporter_class

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from otel_gunicorn._otel_compat import ReadableLogRecord

_log = logging.getLogger("otel_gunicorn")

#: the loggers through which the SDK's span and log exporters report each failed attempt and each retry
ATTEMPT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
)


def span_exporter(protocol: str, endpoint: str | None = None) -> ObservedSpanExporter:
    """The SDK's OTLP span exporter for ``protocol``, its outages logged once; ``endpoint``: the URL (the one the
    arbiter resolved and logged, ``Config.otlp_traces_endpoint``), else the exporter reads the variables itself."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return ObservedSpanExporter(OTLPSpanExporter(endpoint=endpoint))


def log_exporter(protocol: str, endpoint: str | None = None) -> ObservedLogExporter:
    """The SDK's OTLP log record exporter for ``protocol``, its outages logged once; ``endpoint`` as for
    :func:`span_exporter` (``Config.otlp_logs_endpoint``)."""
    exporter_class: Callable[..., LogRecordExporter] = otlp_log_exporter_class(protocol)  # both take endpoint=
    return ObservedLogExporter(exporter_class(endpoint=endpoint))


def metric_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
    return OTLPMetricExporter()


class _AttemptLines(logging.Filter):
    """Holds back what an SDK exporter logs on a thread that is inside a wrapped export, keeping the first line.

    Per thread: each batch processor exports on a thread of its own, so a span export's lines never become the
    reason quoted for a log export failing (the grpc exporters of both share one logger).
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(self._local, "capturing", False):
            return True
        if self._local.first is None:
            self._local.first = record.getMessage()
        return False

    def capture(self) -> None:
        self._local.capturing, self._local.first = True, None

    def release(self) -> str | None:
        """Stop holding lines back on this thread; the first line held back since :meth:`capture`, if any."""
        self._local.capturing = False
        first: str | None = self._local.first
        return first


_ATTEMPT_LINES = _AttemptLines()


def _hold_back_attempt_lines() -> None:
    for name in ATTEMPT_LOGGERS:
        logging.getLogger(name).addFilter(_ATTEMPT_LINES)  # once: addFilter ignores a filter already there


R = TypeVar("R")


def first_line_of(attempt: Callable[[], R]) -> tuple[R, str | None]:
    """Run one export, holding back what the SDK exporter logs meanwhile on this thread; its result and the first
    line held back (it names the URL or host, the HTTP status or gRPC code and the cause), if any."""
    _hold_back_attempt_lines()
    _ATTEMPT_LINES.capture()
    try:
        result = attempt()
    finally:
        first_line = _ATTEMPT_LINES.release()
    return result, first_line


class ExportOutage:
    """One exporter's outages: a warning when its exports start failing, another when one succeeds again.

    Args:
        what: what is exported, for the messages ("span", "log record").
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self.failures_in_a_row = 0
        _hold_back_attempt_lines()

    def export(self, attempt: Callable[[], R], success: R, failure: R) -> R:
        """Run one export (``attempt``, the SDK exporter's, with its own retries); note whether it succeeded."""
        reason: str | None = None
        _ATTEMPT_LINES.capture()
        try:
            result = attempt()
        except Exception as exc:  # noqa: BLE001 - an exporter's bug must be an outage, not a dead batch thread
            result, reason = failure, repr(exc)
        finally:
            first_line = _ATTEMPT_LINES.release()
        self.observe(result == success, reason or first_line)
        return result

    def observe(self, ok: bool, reason: str | None) -> None:
        if ok:
            if self.failures_in_a_row:
                _log.warning(
                    "otel_gunicorn: OTLP %s export recovered after %d failed batches",
                    self._what,
                    self.failures_in_a_row,
                )
            self.failures_in_a_row = 0
            return
        if self.failures_in_a_row == 0:
            _log.warning(
                "otel_gunicorn: OTLP %s export failing; %ss are dropped until it recovers, which is logged once. %s",
                self._what,
                self._what,
                f"The exporter said: {reason}" if reason else "The collector did not accept them.",
            )
        self.failures_in_a_row += 1


class ObservedSpanExporter(SpanExporter):
    """Delegates to an SDK span exporter; logs its outages once (:class:`ExportOutage`)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.outage = ExportOutage("span")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.outage.export(
            lambda: self.exporter.export(spans), SpanExportResult.SUCCESS, SpanExportResult.FAILURE
        )

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class ObservedLogExporter(LogRecordExporter):
    """Delegates to an SDK log record exporter; logs its outages once (:class:`ExportOutage`)."""

    def __init__(self, exporter: LogRecordExporter) -> None:
        self.exporter = exporter
        self.outage = ExportOutage("log record")

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self.outage.export(
            lambda: self.exporter.export(batch), LogRecordExportResult.SUCCESS, LogRecordExportResult.FAILURE
        )

    def shutdown(self) -> None:
        self.exporter.shutdown()  # type: ignore[no-untyped-call]  # the SDK's LogRecordExporter.shutdown is unannotated

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
