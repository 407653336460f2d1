"""The two output formats and the one formatter that renders them, for stdlib and structlog records alike.

Used wherever logging is configured: in the arbiter (gunicorn applies ``logconfig_dict`` there, before the first fork
and again on HUP, and the workers inherit the handlers) and in a worker when the application calls
``configure_structlog``. The renderers themselves are in :mod:`otel_gunicorn._gunicorn_log`, shared with the OTLP
exporter process; here they get the keys only gunicorn's processes have: the trace ids and the worker's slot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import structlog
from structlog.typing import Processor

from otel_gunicorn import _config, _gunicorn_log
from otel_gunicorn._logs.processors import add_process_info, add_trace_context

LOG_FORMATS = _config.LOG_FORMATS
#: dictConfig factory of our formatter; also how a logconfig_dict built by otel_gunicorn is recognised
FORMATTER_FACTORY = "otel_gunicorn.logs.processor_formatter"
log_format_from_env = _config.log_format
#: what gunicorn's processes add after level, logger and timestamp
_CONTEXT: Sequence[Processor] = (add_trace_context, add_process_info)


def log_format_or_exit(environ: Mapping[str, str]) -> str:
    """:func:`log_format_from_env` for code running while gunicorn reads its configuration, in the arbiter: a bad
    value stops gunicorn with one line, as every other bad ``OTEL_GUNICORN_*`` value does."""
    try:
        return log_format_from_env(environ)
    except _config.ConfigError as exc:
        _config.fail_fast(exc)


def common_processors() -> list[Processor]:
    """What every event gets, stdlib or structlog: level, logger name, UTC ISO timestamp, trace and process info."""
    return [*_gunicorn_log.base_processors(), *_CONTEXT]


def processor_formatter(
    log_format: str | None = None, colors: bool = False, fmt: str = "%(message)s"
) -> structlog.stdlib.ProcessorFormatter:
    """A ``logging.Formatter`` rendering every record (stdlib or structlog) as ``log_format`` says.

    Usable from a dictConfig as ``{"()": "otel_gunicorn.logs.processor_formatter", "log_format": "json"}``.

    Args:
        log_format: ``console`` or ``json``; ``None`` reads ``OTEL_GUNICORN_LOG_FORMAT`` now, when the formatter is
            built (default ``console``).
        colors: Whether the console format uses ANSI colours (give ``stream.isatty()``); ignored for ``json``.
        fmt: A stdlib format string around the rendered event (``%(message)s``), e.g. to keep a syslog prefix.

    Raises:
        ValueError: If ``log_format`` is not ``console`` or ``json``.
        ConfigError: If ``log_format`` is ``None`` and ``OTEL_GUNICORN_LOG_FORMAT`` has a bad value.
    """
    if log_format is None:
        log_format = log_format_from_env(os.environ)
    return _gunicorn_log.record_formatter(log_format, colors, fmt, _CONTEXT)


def structlog_processors() -> Sequence[Processor]:
    """The structlog-native chain: the same keys as a stdlib record gets, then handed to the stdlib formatter."""
    return [
        structlog.contextvars.merge_contextvars,
        *common_processors(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
