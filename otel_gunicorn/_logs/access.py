"""A structured access log: gunicorn's ``Logger`` writing one event with fields per request instead of a text line.

``GunicornLogger`` is built by gunicorn in the arbiter (its ``logger_class`` setting) and inherited by every worker;
``access()`` runs in the worker, on the thread, greenlet or event loop that served the request, after the response
and before ``post_request`` — so still inside the request's span, and the trace ids are added by the formatter.

gunicorn calls ``access(resp, req, environ, request_time)`` with different objects per worker class, all read
defensively here:

* sync, gthread: gunicorn's WSGI ``Response`` (``status`` "200 OK", ``status_code``, ``sent``), its ``Request`` and the
  WSGI environ; ``request_time`` a ``timedelta``.
* gevent's pywsgi worker: a stand-in response (``status`` string, ``sent``), the request *headers* as ``req``.
* asgi: ``ASGIResponseInfo`` (``status`` an int, ``sent``), the parsed request, and a small dict built only for
  logging (``REQUEST_METHOD``, ``RAW_URI``, ``PATH_INFO``, ``QUERY_STRING``, ``SERVER_PROTOCOL`` — ``HTTP/2`` for h2 —,
  ``REMOTE_ADDR`` and ``HTTP_*`` headers); ``request_time`` has only ``seconds`` and ``microseconds``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from logging.config import dictConfig
from typing import Any

from gunicorn.glogging import CONFIG_DEFAULTS, Logger
from gunicorn.instrument.statsd import Statsd

from otel_gunicorn._environment import OTEL_GUNICORN_LOG_FORMAT
from otel_gunicorn._gunicorn_log import isatty, render_unhandled_records, set_applied_log_format
from otel_gunicorn._logs.config import with_gunicorn_settings
from otel_gunicorn._logs.formats import (
    FORMATTER_FACTORY,
    LOG_FORMATS,
    log_format_from_env,
    log_format_or_exit,
    processor_formatter,
)
from otel_gunicorn._responses import status_code

#: the event of every access record; the request is in the fields
ACCESS_EVENT = "request"


def access_fields(resp: Any, req: Any, environ: Mapping[str, Any] | None, request_time: Any) -> dict[str, Any]:
    """The access record's fields for one request; a field gunicorn cannot tell us is ``None``.

    Read like gunicorn's own access log atoms, from the environ first (it exists for every worker class), then from
    the request object.
    """
    environ = environ or {}
    return {
        "method": environ.get("REQUEST_METHOD") or _str_attr(req, "method"),
        "path": _path(req, environ),
        "query": environ.get("QUERY_STRING", _str_attr(req, "query")) or "",
        "status": status_code(resp),
        "bytes": _int_attr(resp, "sent"),
        "duration": _seconds(request_time),
        "remote_addr": _address(environ.get("REMOTE_ADDR")),
        "user_agent": environ.get("HTTP_USER_AGENT"),
        "referer": environ.get("HTTP_REFERER"),
        "protocol": environ.get("SERVER_PROTOCOL") or _protocol(getattr(req, "version", None)),
    }


def _str_attr(obj: Any, name: str) -> str | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, str) else None


def _int_attr(obj: Any, name: str) -> int | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _path(req: Any, environ: Mapping[str, Any]) -> str | None:
    # The WSGI environ splits the path at a mount point (SCRIPT_NAME); the log wants the whole path the client asked.
    path_info = environ.get("PATH_INFO")
    if path_info is None:
        return _str_attr(req, "path")
    return f"{environ.get('SCRIPT_NAME', '')}{path_info}"


def _address(remote_addr: Any) -> str | None:
    # gunicorn writes "-" (asgi) or "" (WSGI) for a peer without an address, as on a unix socket
    return remote_addr if isinstance(remote_addr, str) and remote_addr not in ("", "-") else None


def _seconds(request_time: Any) -> float | None:
    total_seconds = getattr(request_time, "total_seconds", None)
    if callable(total_seconds):
        return float(total_seconds())
    seconds = getattr(request_time, "seconds", None)
    microseconds = getattr(request_time, "microseconds", 0)
    if isinstance(seconds, int):
        return seconds + (microseconds or 0) / 1_000_000
    return None


def _protocol(version: Any) -> str | None:
    if isinstance(version, tuple) and len(version) == 2:
        return f"HTTP/{version[0]}.{version[1]}"
    return None


class GunicornLogger(Logger):
    """gunicorn's ``Logger`` with a structured access log. Use it as ``logger_class``.

    Each request becomes one ``gunicorn.access`` record whose message is ``request`` and whose fields (``method``,
    ``path``, ``query``, ``status``, ``bytes``, ``duration``, ``remote_addr``, ``user_agent``, ``referer``,
    ``protocol``) travel as ``extra`` attributes, lifted into the event by the formatter. Whether a request is logged
    is decided exactly as gunicorn decides it; ``access_log_format`` is not used.

    With ``logconfig_dict`` (or another logging configuration) that configuration decides where records go and how
    they look. Without one, gunicorn's own handlers (``--access-logfile``, ``--error-logfile``, syslog) are kept and
    given our formatter, in the format ``OTEL_GUNICORN_LOG_FORMAT`` names.
    """

    #: whether setup() ran before: a bad value is fatal when gunicorn starts, a failed reload (HUP) when it re-runs
    _set_up = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        """gunicorn switches to its statsd logger only when ``logger_class`` is its default; ours replaces that
        choice, so with ``statsd_host`` set the logger is ours and gunicorn's statsd logger in one."""
        cfg = args[0] if args else kwargs.get("cfg")
        if getattr(cfg, "statsd_host", None) and not issubclass(cls, Statsd):
            cls = _with_statsd(cls)
        return super().__new__(cls)

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (also run on HUP); then what gunicorn's own handling of a logging configuration loses."""
        self.cfg = cfg  # gunicorn < 27 keeps the first cfg across a reload; the rules below must see the new one
        super().setup(cfg)
        # decided once per (re)configuration, not per request: the access hook runs on every request
        self._access_on = self._compute_access_log_enabled()
        log_format = self._env_log_format(cfg)
        if _is_ours(cfg.logconfig_dict):
            self._render_the_rest(self._apply_gunicorn_settings(cfg, log_format))
            if not self._access_on:
                # Worker classes that mirror gunicorn's access log copy this logger's handlers (uvicorn-worker gives
                # them to ``uvicorn.access``): with the access log off, as in plain gunicorn, they must find none —
                # or every request is formatted and written (~110 µs a request under uvicorn-worker, measured).
                self.access_log.handlers = []
        elif not (cfg.logconfig_dict or cfg.logconfig or getattr(cfg, "logconfig_json", None)):
            self._structure_own_handlers(log_format)
            self._render_the_rest(log_format)
        # else the user's own logging configuration decides everything
        self._set_up = True

    @staticmethod
    def _render_the_rest(log_format: str) -> None:
        """What no handler takes (and Python's warnings) in ``log_format`` too; the format noted for the processes
        the arbiter starts."""
        render_unhandled_records(processor_formatter(log_format, isatty(sys.stderr)))
        set_applied_log_format(log_format)

    def _env_log_format(self, cfg: Any) -> str:
        # gunicorn applies --env / raw_env to os.environ only after this setup: read it from the settings
        environ = {**os.environ, **_gunicorn_env(cfg)}
        return log_format_from_env(environ) if self._set_up else log_format_or_exit(environ)

    def _apply_gunicorn_settings(self, cfg: Any, env_format: str) -> str:
        """Re-apply our logconfig_dict with --env's format and the --access-logfile / --error-logfile paths, which
        gunicorn's dictConfig has just replaced; return the format of the lines on stderr."""
        from_env = env_format if OTEL_GUNICORN_LOG_FORMAT in _gunicorn_env(cfg) else None
        config = with_gunicorn_settings(cfg.logconfig_dict, from_env, accesslog=cfg.accesslog, errorlog=cfg.errorlog)
        if config != cfg.logconfig_dict:
            dictConfig({**CONFIG_DEFAULTS, **config})  # merged as gunicorn merges it; replaces what it has just built
        stderr_format = config["formatters"].get("stderr", {}).get("log_format", env_format)
        return stderr_format if stderr_format in LOG_FORMATS else env_format

    def _structure_own_handlers(self, log_format: str) -> None:
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                if not getattr(handler, "_gunicorn", False):
                    continue
                # syslog needs its "gunicorn.<name>.access: [pid]" prefix to be routed; a stream or file does not need
                # gunicorn's own timestamp and level, the event carries them
                old = handler.formatter
                fmt = "%(message)s"
                if isinstance(handler, logging.handlers.SysLogHandler) and old is not None and old._fmt:
                    fmt = old._fmt
                handler.setFormatter(processor_formatter(log_format, isatty(getattr(handler, "stream", None)), fmt))

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log one request as a structured ``gunicorn.access`` event (worker, after the response, inside its span)."""
        if not self._access_on:
            return
        try:
            self.access_log.info(ACCESS_EVENT, extra=access_fields(resp, req, environ, request_time))
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): a broken log line must not fail the request
            self.exception("otel_gunicorn: could not write the access log")

    def _compute_access_log_enabled(self) -> bool:
        # Overrides gunicorn's own rule (>= 25 caches it as access_log_enabled, which the asgi worker reads too).
        # gunicorn treats any logconfig_dict as a request for access logging; otel_gunicorn's own (which
        # python:otel_gunicorn.conf always sets) must not switch on a log nobody asked for, so with it the access
        # log follows --access-logfile / accesslog, exactly as with gunicorn's default logging.
        cfg = self.cfg
        return bool(
            cfg.accesslog
            or cfg.logconfig
            or (cfg.logconfig_dict and not _is_ours(cfg.logconfig_dict))
            or getattr(cfg, "logconfig_json", None)
            or (cfg.syslog and not cfg.disable_redirect_access_to_syslog)
        )


def _is_ours(config: Any) -> bool:
    """Whether a logconfig_dict is the one :func:`otel_gunicorn.logs.logconfig_dict` built."""
    formatters = config.get("formatters", {}) if isinstance(config, dict) else {}
    return bool(formatters) and all(
        isinstance(f, dict) and f.get("()") == FORMATTER_FACTORY for f in formatters.values()
    )


def _gunicorn_env(cfg: Any) -> dict[str, str]:
    """gunicorn's ``--env`` / ``raw_env`` as a mapping; empty when it cannot tell (gunicorn reports a bad entry)."""
    try:
        env = cfg.env
    except (AttributeError, RuntimeError):
        return {}
    return env if isinstance(env, dict) else {}


class _StatsdRequests(Logger):
    """What gunicorn's ``Statsd.access`` sends per request, beside our structured access record.

    ``Statsd.access`` itself cannot be called: it also writes gunicorn's text access line.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        super().access(resp, req, environ, request_time)
        try:
            duration_in_ms = request_time.seconds * 1000 + float(request_time.microseconds) / 10**3
            self._request_duration("gunicorn.request.duration", duration_in_ms)
            self.increment("gunicorn.requests", 1)
            status = status_code(resp)
            if status is not None:
                self.increment(f"gunicorn.request.status.{status:d}", 1)
        except Exception:  # noqa: BLE001 - as our access(): telemetry must not fail the request
            self.exception("otel_gunicorn: could not send the request's statsd metrics")

    def _request_duration(self, name: str, value: float) -> None:
        # the same "|ms" packet: gunicorn >= 24 calls its method timer, gunicorn 23 called it histogram (a name 24 gave
        # to a new "|h" method)
        timer = getattr(self, "timer", None)
        (timer if timer is not None else self.histogram)(name, value)


#: one combined class per logger class, so every logger gunicorn builds from the same logger_class has the same type
_STATSD_CLASSES: dict[Any, Any] = {}


def _with_statsd(cls: Any) -> Any:
    """``cls`` (GunicornLogger or a subclass) combined with gunicorn's ``Statsd``: our access record and gunicorn's
    statsd packets, counters of gunicorn's own log calls and the gauges the arbiter sends through its logger."""
    if cls not in _STATSD_CLASSES:
        bases = (_StatsdRequests, cls, Statsd)
        _STATSD_CLASSES[cls] = type(f"Statsd{cls.__name__}", bases, {"__module__": cls.__module__})
    return _STATSD_CLASSES[cls]
