"""A complete gunicorn configuration module: ``gunicorn -c python:otel_gunicorn.conf app:app``.

It installs otel_gunicorn's hooks and its structured, trace-correlated logging (``OTEL_GUNICORN_LOG_FORMAT``:
``console`` or ``json``); every other setting keeps gunicorn's default or comes from the command line and
``GUNICORN_CMD_ARGS``. The access log stays off unless asked for (``--access-logfile -``), as with plain gunicorn.
"""

from otel_gunicorn.hooks import *  # noqa: F403
from otel_gunicorn.hooks import __all__ as _hooks
from otel_gunicorn.logs import GunicornLogger
from otel_gunicorn.logs import logconfig_dict as _logconfig_dict

logger_class = GunicornLogger
logconfig_dict = _logconfig_dict()

__all__ = [*_hooks, "logconfig_dict", "logger_class"]
