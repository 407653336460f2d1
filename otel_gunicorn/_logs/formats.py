"""The two output formats and the one formatter that renders them, for stdlib and structlog records alike.

Used wherever logging is configured: in the arbiter (gunicorn applies ``logconfig_dict`` there, before the first fork
and again on HUP, and the workers inherit the handlers) and in a worker when the application calls
``configure_structlog``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from structlog.typing import Processor

from otel_gunicorn import _config
from otel_gunicorn._logs.processors import add_process_info, add_trace_context

LOG_FORMATS = _config.LOG_FORMATS
#: dictConfig factory of our formatter; also how a logconfig_dict built by otel_gunicorn is recognised
FORMATTER_FACTORY = "otel_gunicorn.logs.processor_formatter"
log_format_from_env = _config.log_format


def log_format_or_exit(environ: Mapping[str, str]) -> str:
    """:func:`log_format_from_env` for code running while gunicorn reads its configuration, in the arbiter: a bad
    value stops gunicorn with one line, as every other bad ``OTEL_GUNICORN_*`` value does."""
    try:
        return log_format_from_env(environ)
    except _config.ConfigError as exc:
        _config.fail_fast(exc)


def check_log_format(log_format: str) -> str:
    """``log_format`` if it is one we render; a ValueError (a programming error, not configuration) otherwise."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format={log_format!r} is not valid: expected {' or '.join(LOG_FORMATS)}")
    return log_format


def common_processors() -> list[Processor]:
    """What every event gets, stdlib or structlog: level, logger name, UTC ISO timestamp, trace and process info."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
        add_process_info,
    ]


def foreign_pre_chain() -> list[Processor]:
    """The chain a stdlib ``LogRecord`` goes through before rendering.

    ``ExtraAdder`` comes first: it lifts whatever was passed as ``extra=`` (the access log's fields, an application's
    own) into the event, and the common processors after it still set level, logger and timestamp.
    """
    return [structlog.stdlib.ExtraAdder(), *common_processors()]


def renderers(log_format: str, colors: bool) -> list[Processor]:
    """The last processors of the formatter: ``json`` -> one JSON object per line, ``console`` -> a readable line."""
    if check_log_format(log_format) == "json":
        # JSONRenderer cannot serialise an exc_info tuple; the console renderer formats it itself (and warns if
        # format_exc_info ran before it), so only the JSON chain turns it into a string.
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=colors)]


def processor_formatter(
    log_format: str = LOG_FORMATS[0], colors: bool = False, fmt: str = "%(message)s"
) -> structlog.stdlib.ProcessorFormatter:
    """A ``logging.Formatter`` rendering every record (stdlib or structlog) as ``log_format`` says.

    Usable from a dictConfig as ``{"()": "otel_gunicorn.logs.processor_formatter", "log_format": "json"}``.

    Args:
        log_format: ``console`` or ``json``.
        colors: Whether the console format uses ANSI colours (give ``stream.isatty()``); ignored for ``json``.
        fmt: A stdlib format string around the rendered event (``%(message)s``), e.g. to keep a syslog prefix.

    Raises:
        ValueError: If ``log_format`` is not ``console`` or ``json``.
    """
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_pre_chain(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers(log_format, colors)],
        fmt=fmt,
    )


def isatty(stream: object) -> bool:
    """Whether ``stream`` is a terminal; False for anything that cannot tell (closed, replaced, None)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def structlog_processors() -> Sequence[Processor]:
    """The structlog-native chain: the same keys as a stdlib record gets, then handed to the stdlib formatter."""
    return [
        structlog.contextvars.merge_contextvars,
        *common_processors(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
