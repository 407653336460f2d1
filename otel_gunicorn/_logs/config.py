"""Logging configuration: a complete ``logconfig_dict`` for gunicorn, and one call for structlog-native applications.

``logconfig_dict`` is evaluated where gunicorn reads its configuration file: in the arbiter, at start and again on
every HUP (``-c file.py`` is re-executed). gunicorn merges the result *shallowly* into its ``CONFIG_DEFAULTS``, so each
section given replaces gunicorn's whole section: we give all of them. ``configure_structlog`` runs wherever the
application calls it, usually in a worker while the application module is imported.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from typing import Any

import structlog

from otel_gunicorn._config import ConfigError
from otel_gunicorn._gunicorn_log import check_log_format, isatty, render_unhandled_records
from otel_gunicorn._logs.formats import (
    FORMATTER_FACTORY,
    log_format_from_env,
    log_format_or_exit,
    processor_formatter,
    structlog_processors,
)

_STREAM_HANDLERS = {
    stream: {"class": "logging.StreamHandler", "formatter": stream, "stream": f"ext://sys.{stream}"}
    for stream in ("stdout", "stderr")
}


def logconfig_dict(log_format: str | None = None) -> dict[str, Any]:
    """A complete ``logging.config.dictConfig`` for gunicorn's ``logconfig_dict`` setting.

    Every record is rendered by structlog's ``ProcessorFormatter``: ``gunicorn.error`` and the root logger (so the
    application's plain ``logging`` calls too) to stderr, ``gunicorn.access`` to stdout. The gunicorn loggers do not
    propagate, so nothing is written twice, and carry no ``level``, so ``--log-level`` keeps deciding for
    ``gunicorn.error``. The root logger is set to ``INFO``.

    Args:
        log_format: ``console`` or ``json``; ``None`` follows ``OTEL_GUNICORN_LOG_FORMAT`` (default ``console``): the
            formatters then carry no ``log_format`` and read the variable when gunicorn builds them, and
            :class:`GunicornLogger` applies a value given with gunicorn's ``--env``. A bad value of the variable
            prints one line naming it and stops gunicorn (``SystemExit(1)``).

    Returns:
        A fresh dictionary of plain data (strings and booleans), safe to edit, print or dump as JSON.

    Raises:
        ValueError: If ``log_format`` is given and is not ``console`` or ``json``.
    """
    if log_format is None:
        log_format_or_exit(os.environ)  # checked now, while gunicorn reads its configuration: one line, no traceback
        fixed: dict[str, str] = {}
    else:
        fixed = {"log_format": check_log_format(log_format)}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            # one per stream: colours depend on whether that stream is a terminal, decided here in the arbiter,
            # whose standard streams the workers inherit
            "stdout": {"()": FORMATTER_FACTORY, **fixed, "colors": isatty(sys.stdout)},
            "stderr": {"()": FORMATTER_FACTORY, **fixed, "colors": isatty(sys.stderr)},
        },
        "handlers": copy.deepcopy(_STREAM_HANDLERS),
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"handlers": ["stdout"], "propagate": False},
        },
    }


#: gunicorn's settings naming where a log goes: (setting, its logger, the stream handler of ours it replaces)
_DESTINATIONS = (("accesslog", "gunicorn.access", "stdout"), ("errorlog", "gunicorn.error", "stderr"))


def with_gunicorn_settings(
    config: dict[str, Any], log_format: str | None = None, **destinations: str | None
) -> dict[str, Any]:
    """``config`` (built by :func:`logconfig_dict`) with what gunicorn's own settings ask, which dictConfig overrides.

    gunicorn applies ``logconfig_dict`` after creating the handlers for ``--access-logfile`` and ``--error-logfile``,
    and dictConfig replaces them; ``--env`` reaches the environment only after that. So:

    * ``log_format`` (from ``--env``) goes into the formatters that follow ``OTEL_GUNICORN_LOG_FORMAT``; a format
      fixed with ``logconfig_dict("json")`` stays;
    * ``accesslog=PATH`` / ``errorlog=PATH`` (the gunicorn settings, ``-`` meaning the standard stream) replace that
      logger's stream handler with a file handler in the same format, without colours. A logger no longer writing
      to our stream handler was routed by the user, and keeps their handlers.

    Returns:
        A new dictionary; equal to ``config`` when there is nothing to apply.
    """
    config = copy.deepcopy(config)
    if log_format is not None:
        for formatter in config.get("formatters", {}).values():
            if formatter.get("()") == FORMATTER_FACTORY:
                formatter.setdefault("log_format", log_format)
    for setting, logger, stream in _DESTINATIONS:
        path = destinations.get(setting)
        if path is not None and path != "-":
            _to_file(config, setting, logger, stream, path)
    return config


def _to_file(config: dict[str, Any], name: str, logger: str, stream: str, path: str) -> None:
    handlers = config.get("loggers", {}).get(logger, {}).get("handlers", [])
    if stream not in handlers or config["handlers"].get(stream) != _STREAM_HANDLERS[stream]:
        return
    config["formatters"][name] = {**config["formatters"][stream], "colors": False}
    config["handlers"][name] = {"class": "logging.FileHandler", "formatter": name, "filename": path}
    config["loggers"][logger]["handlers"] = [name if h == stream else h for h in handlers]


def render_early_records() -> None:
    """In JSON mode, render the records logged before gunicorn configures logging as JSON, not as bare text.

    Python hands a record no handler takes to its last-resort handler, which prints the bare message. Under gunicorn
    that is every record logged while the configuration file is imported, e.g. the OpenTelemetry SDK's warning about
    a bad ``OTEL_RESOURCE_ATTRIBUTES``: a line that is not JSON. Call it before importing the hooks. The console
    format keeps Python's default (a bare message is a readable line), and a bad value is left for
    :func:`logconfig_dict` to report.
    """
    try:
        log_format = log_format_from_env(os.environ)
    except ConfigError:
        return
    if log_format == "json":
        render_unhandled_records(processor_formatter(log_format))


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
