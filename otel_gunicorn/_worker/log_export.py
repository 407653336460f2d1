"""``OTEL_LOGS_EXPORTER=otlp``: a worker's log records also go to the collector, through the OpenTelemetry SDK.

Runs in a worker; built after the fork. The SDK's ``LoggingHandler`` is added to the root logger and to gunicorn's
error and access loggers (which do not propagate), so the application's stdlib logging, gunicorn's messages and the
access log are exported, each record with the trace context current when it was logged.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogExporter
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _otlp
from otel_gunicorn._config import Config

EXPORTED_LOGGERS = ("", "gunicorn.error", "gunicorn.access")


def build_logger_provider(config: Config, resource: Resource) -> LoggerProvider | None:
    """The worker's LoggerProvider for ``OTEL_LOGS_EXPORTER`` (None when off), wired into stdlib logging."""
    if config.logs_exporter == "none":
        return None
    exporter = (
        ConsoleLogExporter() if config.logs_exporter == "console" else _otlp.log_exporter(config.otlp_protocol("logs"))
    )
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(logger_provider=provider)
    for name in EXPORTED_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    return provider
