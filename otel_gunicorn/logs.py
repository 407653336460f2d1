"""Structured, trace-correlated logs for gunicorn, rendered by structlog as console lines or JSON.

Turn it on in a gunicorn configuration file (read by the arbiter; the workers inherit the handlers)::

    from otel_gunicorn.logs import GunicornLogger, logconfig_dict

    logger_class = GunicornLogger
    logconfig_dict = logconfig_dict()  # OTEL_GUNICORN_LOG_FORMAT: console (default) or json
    accesslog = "-"  # or a path; --error-logfile PATH, --env OTEL_GUNICORN_LOG_FORMAT and --statsd-host work too

Every record — gunicorn's, the application's stdlib ``logging`` and, after :func:`configure_structlog`, structlog's —
carries ``timestamp``, ``level``, ``logger``, ``pid``, ``thread_id``, ``gunicorn.worker.slot`` in workers, and
``trace_id``/``span_id``/``trace_flags`` inside a span. See ``docs/logging.md``.
"""

from otel_gunicorn._handoff import set_worker_slot
from otel_gunicorn._logs.access import GunicornLogger
from otel_gunicorn._logs.config import configure_structlog, logconfig_dict
from otel_gunicorn._logs.formats import log_format_from_env, processor_formatter
from otel_gunicorn._logs.processors import add_process_info, add_trace_context

__all__ = [
    "GunicornLogger",
    "add_process_info",
    "add_trace_context",
    "configure_structlog",
    "log_format_from_env",
    "logconfig_dict",
    "processor_formatter",
    "set_worker_slot",
]
