"""A complete gunicorn configuration module: ``gunicorn -c python:otel_gunicorn.conf app:app``.

It installs otel_gunicorn's hooks and its structured, trace-correlated logging (``OTEL_GUNICORN_LOG_FORMAT``:
``console`` or ``json``); every other setting keeps gunicorn's default or comes from the command line and
``GUNICORN_CMD_ARGS``. The access log stays off unless asked for (``--access-logfile -``, or a path), as with plain
gunicorn; ``--error-logfile PATH`` and ``--statsd-host`` work as they do there.
"""

from otel_gunicorn._logs.config import render_early_records

# First, before the hooks import the OpenTelemetry SDK: it logs some bad settings (OTEL_RESOURCE_ATTRIBUTES) as it
# is imported, while gunicorn has not configured logging yet.
render_early_records()

from otel_gunicorn.hooks import *  # noqa: E402, F403
from otel_gunicorn.hooks import __all__ as _hooks  # noqa: E402
from otel_gunicorn.logs import GunicornLogger  # noqa: E402
from otel_gunicorn.logs import logconfig_dict as _logconfig_dict  # noqa: E402

logger_class = GunicornLogger
logconfig_dict = _logconfig_dict()

__all__ = [*_hooks, "logconfig_dict", "logger_class"]
