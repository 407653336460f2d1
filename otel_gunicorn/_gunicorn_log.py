"""Where otel_gunicorn's own log records go, and the one way every process of a server renders a record.

The library logs under the ``otel_gunicorn`` logger, as libraries should. Under gunicorn nobody configures that
logger, so its warnings would fall to Python's last-resort handler (bare stderr, no timestamp). This forwards each
record to ``gunicorn.error`` at emit time, so it follows ``--log-level``, ``--error-logfile``, ``logconfig_dict`` and
their reconfiguration on HUP. Applied only when the user has not configured the ``otel_gunicorn`` logger. A
forwarded record and a fork exclude each other (:attr:`LoggingState.writing`), because the arbiter's threads log
through it. Everything this module keeps in a process is one :class:`LoggingState`, :data:`LOGGING`.

The formatter lives here, below the process sides, because two of them that may not import each other need it:
``_logs`` (the arbiter's and the workers' handlers, which add the trace ids and the worker's slot) and ``_exporter``
(the OTLP exporter process, a child of the arbiter with no gunicorn logging of its own). One builder, so a line
from any of them has the same keys and the same format.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Mapping, Sequence

import structlog
from structlog.typing import EventDict, ExceptionRenderer, Processor, WrappedLogger

from otel_gunicorn import _config
from otel_gunicorn._fork import FORK, ForkLock

_LIBRARY_LOGGER = "otel_gunicorn"
_GUNICORN_ERROR_LOGGER = "gunicorn.error"

LOG_FORMATS = _config.LOG_FORMATS


#: longest a fork waits for a forwarded record being written
_FORK_WAIT = 1.0


@dataclasses.dataclass
class LoggingState:
    """Everything this module keeps in a process, in one object (tests: :meth:`reset`)."""

    #: held while a forwarded record is written, and across every fork (the process's fork handlers, stage "log
    #: writing"). The arbiter's threads log through the forwarder (``serving metrics at ...`` comes as gunicorn forks
    #: its first workers); a fork in the middle of that write copies the stream's buffer lock held into the child,
    #: whose own first line (``Booting worker``) then blocks forever. At most ``_FORK_WAIT`` for a write in progress:
    #: one stuck on a full pipe must not stop the arbiter from forking.
    writing: ForkLock = dataclasses.field(default_factory=lambda: ForkLock(fork_wait=_FORK_WAIT))
    #: the fork held :attr:`writing` (it may have given up waiting)
    held_for_fork: bool = False
    #: the format GunicornLogger set the server's logging up with in this process; None without GunicornLogger
    applied_format: str | None = None

    def reset(self) -> None:
        """Back to a process that has set nothing up (the fork handlers stay: they are the process's)."""
        self.writing = ForkLock(fork_wait=_FORK_WAIT)
        self.held_for_fork = False
        self.applied_format = None


#: this process's logging state (see :class:`LoggingState`)
LOGGING = LoggingState()


class _ToGunicornErrorLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(_GUNICORN_ERROR_LOGGER)
        if target.isEnabledFor(record.levelno):
            with LOGGING.writing:
                target.handle(record)


def _hold_writes_for_fork() -> None:
    LOGGING.held_for_fork = LOGGING.writing.hold_for_fork()


def _release_writes_in_parent() -> None:
    LOGGING.writing.release_after_fork(LOGGING.held_for_fork)
    LOGGING.held_for_fork = False


def _fresh_writes_in_child() -> None:
    # Held by the forking thread, or still by another thread if the fork gave up waiting: either way, not the
    # child's to release. A fresh lock, free.
    LOGGING.writing.reset_in_child()
    LOGGING.held_for_fork = False


def forward_to_gunicorn() -> None:
    """Forward ``otel_gunicorn`` records to gunicorn's error log, unless that logger is already configured."""
    FORK.join(
        "log writing",
        before=_hold_writes_for_fork,
        after_in_parent=_release_writes_in_parent,
        after_in_child=_fresh_writes_in_child,
    )
    library = logging.getLogger(_LIBRARY_LOGGER)
    if library.handlers or library.level != logging.NOTSET:
        return
    library.addHandler(_ToGunicornErrorLog())
    library.setLevel(logging.DEBUG)  # the forwarder applies gunicorn's level
    library.propagate = False


# ---------------------------------------------------------------- rendering


def check_log_format(log_format: str) -> str:
    """``log_format`` if it is one we render; a ValueError (a programming error, not configuration) otherwise."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log_format={log_format!r} is not valid: expected {' or '.join(LOG_FORMATS)}")
    return log_format


def base_processors() -> list[Processor]:
    """What every event gets first, in every process: level, logger name and a UTC ISO timestamp."""
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def add_pid_and_thread(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``pid`` and ``thread_id``: a stdlib record's own (``%(process)d``, ``%(thread)d``), else the caller's.

    From the record, so they stay right when the record is formatted elsewhere. Existing keys are kept; never raises.
    """
    try:
        record = event_dict.get("_record")
        pid = getattr(record, "process", None)
        thread_id = getattr(record, "thread", None)
        event_dict.setdefault("pid", pid if pid is not None else os.getpid())
        event_dict.setdefault("thread_id", thread_id if thread_id is not None else threading.get_ident())
    except Exception:  # noqa: BLE001 - a log call must never fail because of its decoration
        pass
    return event_dict


def renderers(log_format: str, colors: bool) -> list[Processor]:
    """The last processors of the formatter: ``json`` -> one JSON object per line, ``console`` -> a readable line."""
    if check_log_format(log_format) == "json":
        # JSONRenderer cannot serialise an exc_info tuple; the console renderer formats it itself (and warns if
        # format_exc_info ran before it), so only the JSON chain turns it into a string (a plain traceback).
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=traceback_formatter(colors))]


def traceback_formatter(colors: bool) -> ExceptionRenderer:
    """How the console format renders a traceback: never with the frames' local variables, whatever is installed.

    structlog's default is rich's traceback *with locals* where rich is installed (any package may pull it in), else
    better-exceptions' (values too) where that is: a log line would carry every local of every frame (API keys,
    ``Authorization`` headers, the WSGI environ). Here rich's traceback without locals where rich is installed,
    else structlog's plain one, the same text the ``json`` format carries.
    """
    try:
        import rich.traceback  # noqa: F401 - already imported by structlog wherever it is installed
    except ImportError:
        return structlog.dev.plain_traceback
    return structlog.dev.RichTracebackFormatter(show_locals=False, color_system="truecolor" if colors else None)


def record_formatter(
    log_format: str,
    colors: bool = False,
    fmt: str = "%(message)s",
    context: Sequence[Processor] = (add_pid_and_thread,),
) -> structlog.stdlib.ProcessorFormatter:
    """A ``logging.Formatter`` rendering stdlib records (and structlog events) as ``log_format`` says.

    ``ExtraAdder`` comes first: it lifts whatever was passed as ``extra=`` into the event; ``context`` adds the
    process's own keys after the level, logger and timestamp (``_logs`` adds the trace ids and the worker's slot).
    """
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *base_processors(), *context],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers(log_format, colors)],
        fmt=fmt,
    )


def isatty(stream: object) -> bool:
    """Whether ``stream`` is a terminal; False for anything that cannot tell (closed, replaced, None)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def set_applied_log_format(log_format: str) -> None:
    LOGGING.applied_format = log_format


def applied_log_format() -> str | None:
    """The format the server's own lines are rendered in, as ``GunicornLogger`` set it up (``logconfig_dict("json")``
    fixes it without the variable): what a process the arbiter starts should get as ``OTEL_GUNICORN_LOG_FORMAT``."""
    return LOGGING.applied_format


def log_to_stderr(environ: Mapping[str, str]) -> None:
    """For a process otel_gunicorn starts itself (the OTLP exporter): INFO and above to stderr, rendered like the
    server's own lines in ``OTEL_GUNICORN_LOG_FORMAT`` (inherited from the arbiter), instead of ``basicConfig``'s text.

    Idempotent, so the process may call it as early as it likes (before the SDK's modules, some of which log while
    they are imported) and again in its main function.
    """
    root = logging.getLogger()
    if any(isinstance(handler, _Stderr) for handler in root.handlers):
        return
    try:
        log_format = _config.log_format(environ)
    except _config.ConfigError:
        log_format = LOG_FORMATS[0]  # the arbiter has refused a bad value already; a child never stops over it
    handler = _Stderr(sys.stderr)
    handler.setFormatter(record_formatter(log_format, colors=isatty(sys.stderr)))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # a warnings.warn() of the SDK or grpc: a record too, not two lines of text


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`log_to_stderr` adds (a class of its own, so a second call can tell it is there)."""


class _LastResort(logging.StreamHandler):  # type: ignore[type-arg]
    """Like Python's own last resort: on whatever ``sys.stderr`` is at emit time (gunicorn may redirect it), but
    through a formatter."""

    def __init__(self, formatter: logging.Formatter) -> None:
        logging.Handler.__init__(self, logging.WARNING)  # not StreamHandler's: it would pin today's sys.stderr
        self.setFormatter(formatter)

    @property
    def stream(self) -> object:
        return sys.stderr


def render_unhandled_records(formatter: logging.Formatter) -> None:
    """Render what would reach stderr outside any handler with ``formatter``: the records no handler takes (Python's
    last resort prints their bare message) and Python's warnings (``warnings.warn`` prints two lines of text).

    Such records are the ones logged before gunicorn configures logging (the OpenTelemetry SDK warns about a bad
    ``OTEL_RESOURCE_ATTRIBUTES`` while gunicorn imports its configuration file) and, without a logging configuration,
    the application's and the SDK's warnings: without this they would break a stream of JSON lines.
    """
    logging.lastResort = _LastResort(formatter)
    logging.captureWarnings(True)  # as records of the "py.warnings" logger, WARNING
