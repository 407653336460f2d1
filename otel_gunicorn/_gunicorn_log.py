"""Send otel_gunicorn's own log records to gunicorn's error log, wherever gunicorn's logging is configured to go.

The library logs under the ``otel_gunicorn`` logger, as libraries should. Under gunicorn nobody configures that
logger, so its warnings would fall to Python's last-resort handler (bare stderr, no timestamp). This forwards each
record to ``gunicorn.error`` at emit time, so it follows ``--log-level``, ``--error-logfile``, ``logconfig_dict`` and
their reconfiguration on HUP. Applied only when the user has not configured the ``otel_gunicorn`` logger.
"""

from __future__ import annotations

import logging

_LIBRARY_LOGGER = "otel_gunicorn"
_GUNICORN_ERROR_LOGGER = "gunicorn.error"


class _ToGunicornErrorLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(_GUNICORN_ERROR_LOGGER)
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def forward_to_gunicorn() -> None:
    """Forward ``otel_gunicorn`` records to gunicorn's error log, unless that logger is already configured."""
    library = logging.getLogger(_LIBRARY_LOGGER)
    if library.handlers or library.level != logging.NOTSET:
        return
    library.addHandler(_ToGunicornErrorLog())
    library.setLevel(logging.DEBUG)  # the forwarder applies gunicorn's level
    library.propagate = False
