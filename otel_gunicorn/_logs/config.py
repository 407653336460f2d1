"""Logging configuration: a complete ``logconfig_dict`` for gunicorn, and one call for structlog-native applications.

``logconfig_dict`` is evaluated where gunicorn reads its configuration file: in the arbiter, at start and again on
every HUP (``-c file.py`` is re-executed). gunicorn merges the result *shallowly* into its ``CONFIG_DEFAULTS``, so each
section given replaces gunicorn's whole section: we give all of them. ``configure_structlog`` runs wherever the
application calls it, usually in a worker while the application module is imported.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from otel_gunicorn._logs.formats import (
    FORMATTER_FACTORY,
    check_log_format,
    isatty,
    log_format_from_env,
    log_format_or_exit,
    processor_formatter,
    structlog_processors,
)


def logconfig_dict(log_format: str | None = None) -> dict[str, Any]:
    """A complete ``logging.config.dictConfig`` for gunicorn's ``logconfig_dict`` setting.

    Every record is rendered by structlog's ``ProcessorFormatter``: ``gunicorn.error`` and the root logger (so the
    application's plain ``logging`` calls too) to stderr, ``gunicorn.access`` to stdout. The gunicorn loggers do not
    propagate, so nothing is written twice, and carry no ``level``, so ``--log-level`` keeps deciding for
    ``gunicorn.error``. The root logger is set to ``INFO``.

    Args:
        log_format: ``console`` or ``json``; ``None`` reads ``OTEL_GUNICORN_LOG_FORMAT`` (default ``console``).
            A bad value of the variable prints one line naming it and stops gunicorn (``SystemExit(1)``).

    Returns:
        A fresh dictionary of plain data (strings and booleans), safe to edit, print or dump as JSON.

    Raises:
        ValueError: If ``log_format`` is given and is not ``console`` or ``json``.
    """
    if log_format is None:
        log_format = log_format_or_exit(os.environ)
    check_log_format(log_format)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # one per stream: colours depend on whether that stream is a terminal, decided here in the arbiter,
            # whose standard streams the workers inherit
            "stdout": {"()": FORMATTER_FACTORY, "log_format": log_format, "colors": isatty(sys.stdout)},
            "stderr": {"()": FORMATTER_FACTORY, "log_format": log_format, "colors": isatty(sys.stderr)},
        },
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "stdout", "stream": "ext://sys.stdout"},
            "stderr": {"class": "logging.StreamHandler", "formatter": "stderr", "stream": "ext://sys.stderr"},
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "propagate": False},
        },
    }


def configure_structlog(log_format: str | None = None) -> None:
    """Configure structlog so ``structlog.get_logger().info(...)`` comes out like the stdlib records.

    Events get the same keys (level, logger, timestamp, trace and process info, plus bound and contextvars values)
    and are handed to stdlib logging, whose handlers render them: under gunicorn with :func:`logconfig_dict`, the
    root logger's handler, so both kinds of records share one format and one stream. Call it once, at import time of
    the application.

    If the root logger has no handler yet (outside gunicorn, or gunicorn without ``logconfig_dict``), one writing to
    stderr in ``log_format`` is added and the root level set to ``INFO``, as ``logging.basicConfig`` would; when it
    has handlers, they decide the format and ``log_format`` is only validated.

    Args:
        log_format: ``console`` or ``json``; ``None`` reads ``OTEL_GUNICORN_LOG_FORMAT`` (default ``console``).

    Raises:
        ConfigError: If ``log_format`` is ``None`` and ``OTEL_GUNICORN_LOG_FORMAT`` has a bad value.
        ValueError: If ``log_format`` is given and is not ``console`` or ``json``.
    """
    log_format = check_log_format(log_format_from_env(os.environ) if log_format is None else log_format)
    structlog.configure(
        processors=structlog_processors(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(processor_formatter(log_format, colors=isatty(sys.stderr)))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
