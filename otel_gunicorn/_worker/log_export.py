"""``OTEL_LOGS_EXPORTER=otlp``: a worker's log records also go to the collector, through the OpenTelemetry SDK.

Runs in a worker; built after the fork. The SDK's ``LoggingHandler`` is added to the root logger and to gunicorn's
error and access loggers (which do not propagate), so the application's stdlib logging, gunicorn's messages and the
access log are exported, each record with the trace context current when it was logged. ``console`` prints each
record as one JSON object per line on stdout instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _otlp
from otel_gunicorn._config import Config
from otel_gunicorn._otel_compat import (
    BatchLogRecordProcessor,
    ConsoleLogRecordExporter,
    LoggerProvider,
    LoggingHandler,
    LogRecordExporter,
    get_logger_provider,
)
from otel_gunicorn._worker.log_records import exportable

if TYPE_CHECKING:
    from otel_gunicorn._otel_compat import ReadableLogRecord

EXPORTED_LOGGERS = ("", "gunicorn.error", "gunicorn.access")


class _EventHandler(LoggingHandler):
    """The SDK's handler, given a record whose attributes are the event's own (structlog's bookkeeping left out)."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(exportable(record))


def clean_records(handler: LoggingHandler) -> None:
    """Make ``handler`` export every record as :func:`exportable` gives it (idempotent).

    For opentelemetry-instrument's own handler, which must stay the very object the distro keeps through every
    ``dictConfig`` (it removes and re-adds that object), so it cannot be replaced by an :class:`_EventHandler`; and a
    ``logging.Filter`` cannot hand it another record before Python 3.12. It stays so until the worker exits (records
    logged after :meth:`LogExport.shutdown` are cleaned too). Without this, a structlog event reached
    the SDK as it is: ``_logger`` answered with "Invalid type ... for attribute value" on every line.
    """
    if isinstance(handler, _EventHandler) or getattr(handler, "_otel_gunicorn_clean", False):
        return
    emit = handler.emit

    def emit_exportable(record: logging.LogRecord) -> None:
        emit(exportable(record))

    handler.emit = emit_exportable  # type: ignore[method-assign]  # this instance only
    handler._otel_gunicorn_clean = True  # type: ignore[attr-defined]


class LogExport:
    """The worker's LoggerProvider and the handler that feeds it stdlib logging's records."""

    def __init__(self, provider: LoggerProvider, owned: bool = True) -> None:
        self.provider = provider
        self._owned = owned
        # opentelemetry-instrument's own handler on root (OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true), which
        # it keeps through every dictConfig: a second one there would export each record twice. gunicorn's error and
        # access loggers do not propagate to root, so they get that same handler. Its records are cleaned as ours.
        on_root = None if owned else next((h for h in logging.getLogger().handlers if type(h) is LoggingHandler), None)
        if on_root is not None:
            clean_records(on_root)
        self.handler: LoggingHandler = on_root or _EventHandler(logger_provider=provider)
        self._loggers = tuple(name for name in EXPORTED_LOGGERS if not (name == "" and on_root is not None))
        for name in self._loggers:
            logging.getLogger(name).addHandler(self.handler)

    def shutdown(self) -> None:
        """Stop feeding records, then export those still queued: a record logged after the provider's shutdown
        would be dropped, with a line from the SDK saying so. A provider set before the fork is only flushed: its
        owner shuts it down at exit."""
        for name in self._loggers:
            logging.getLogger(name).removeHandler(self.handler)
        if self._owned:
            self.provider.shutdown()
        else:
            self.provider.force_flush()


def build_log_export(config: Config, resource: Resource) -> LogExport | None:
    """The worker's log export for ``OTEL_LOGS_EXPORTER`` (None when off), wired into stdlib logging."""
    if config.logs_exporter == "none":
        return None
    inherited = get_logger_provider()
    if isinstance(inherited, LoggerProvider):
        # Set in the arbiter before the fork (opentelemetry-instrument's configurator): its exporters and resource.
        return LogExport(inherited, owned=False)
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter(config)))
    return LogExport(provider)


def _log_exporter(config: Config) -> LogRecordExporter:
    """``console``: one record per line on stdout; ``otlp``: the SDK's exporter, its outages logged once."""
    if config.logs_exporter == "console":
        return ConsoleLogRecordExporter(formatter=one_line_record)
    return _otlp.log_exporter(config.otlp_protocol("logs"), config.otlp_endpoint("logs"))


def one_line_record(record: ReadableLogRecord) -> str:
    """A log record as one compact JSON object and a newline (the SDK's default indents it over many lines)."""
    return record.to_json(indent=None) + "\n"
