"""One frozen configuration value, built once from an explicit environment mapping.

Two error rules (``docs/environment.md``):

* our own ``OTEL_GUNICORN_*`` variables are ours to define strictly: a bad value raises :class:`ConfigError`, which
  the arbiter turns into one line on stderr and a non-zero exit *before any worker forks*;
* standard ``OTEL_*`` variables follow the OpenTelemetry rule: warn once and use the default.

One piece (~410 lines, most of them one small parser per variable): every variable is read here and nowhere else, so
the reader checking what a value may be has one place to look.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import NoReturn

from otel_gunicorn import _environment as env
from otel_gunicorn._webconfig import WebConfig, WebConfigError, load_web_config

_log = logging.getLogger("otel_gunicorn")

_OWN_PREFIX = "OTEL_GUNICORN_"

#: Exporters the arbiter knows how to run for the merged metrics.
METRICS_EXPORTERS = frozenset({"prometheus", "otlp", "none"})
#: Exporters a worker can run for its spans and its log records.
SPAN_AND_LOG_EXPORTERS = ("none", "otlp", "console")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")
#: values of ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``; the first is the default
TEMPORALITY_PREFERENCES = ("cumulative", "delta", "lowmemory")
#: values of ``OTEL_METRICS_EXEMPLAR_FILTER`` (the specification's); the first is the default
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")


class ConfigError(ValueError):
    """A setting of ours has a value we cannot use; the message names the variable, the value and what is accepted."""

    def __init__(self, variable: str, value: str, accepted: str, *, message: str | None = None) -> None:
        super().__init__(message or f"{variable}={value!r} is not valid: expected {accepted}")
        self.variable = variable
        self.value = value
        self.accepted = accepted


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything otel_gunicorn needs to know, read once in the arbiter (and inherited by the workers)."""

    enabled: bool = True
    metrics_exporters: frozenset[str] = frozenset({"prometheus"})
    prometheus_host: str = "localhost"
    prometheus_port: int = 9464
    prometheus_web_config: WebConfig | None = None
    metrics_interval: float = 5.0
    max_frame_bytes: int = 16 * 1024 * 1024
    #: most distinct ``http.route`` values per worker (``OTEL_GUNICORN_MAX_ROUTES``)
    max_routes: int = 500
    #: seconds after which a running request is logged with its stack and counted as slow; None: no check
    #: (``OTEL_GUNICORN_SLOW_REQUEST_SECONDS``)
    slow_request_seconds: float | None = None
    channel_dir: str = dataclasses.field(default_factory=tempfile.gettempdir)
    log_format: str = "console"
    metric_export_interval: float = 60.0
    traces_exporter: str = "none"
    logs_exporter: str = "none"
    otlp_protocols: tuple[tuple[str, str], ...] = (
        ("metrics", "http/protobuf"),
        ("traces", "http/protobuf"),
        ("logs", "http/protobuf"),
    )
    #: one of :data:`TEMPORALITY_PREFERENCES`, for the OTLP push of the merged metrics
    metrics_temporality: str = "cumulative"
    #: seconds a graceful stop may spend on telemetry in all (``OTEL_GUNICORN_SHUTDOWN_TIMEOUT``)
    shutdown_timeout: float = 1.0
    #: one of :data:`EXEMPLAR_FILTERS`: which measurements the workers keep as exemplars
    exemplar_filter: str = "trace_based"
    #: where the arbiter pushes the merged metrics over OTLP (:func:`otlp_metrics_endpoint`)
    otlp_metrics_endpoint: str = "http://localhost:4318/v1/metrics"
    #: where the workers export their spans and log records over OTLP (:func:`otlp_endpoint`; the arbiter says
    #: what it corrected, once: ``_arbiter/exports.py``)
    otlp_traces_endpoint: str = "http://localhost:4318/v1/traces"
    otlp_logs_endpoint: str = "http://localhost:4318/v1/logs"
    #: ``(signal, message)`` for each correction :func:`otlp_endpoint` made (the metrics' only when they are pushed:
    #: those are logged by :meth:`from_env` itself, the others by the arbiter, ``_arbiter/exports.py``)
    otlp_endpoint_notes: tuple[tuple[str, str], ...] = ()

    def otlp_protocol(self, signal: str) -> str:
        """``http/protobuf`` or ``grpc`` for ``signal`` (metrics, traces or logs)."""
        return dict(self.otlp_protocols)[signal]

    def otlp_endpoint(self, signal: str) -> str:
        """The URL the OTLP exporter of ``signal`` (metrics, traces or logs) sends to."""
        return {
            "metrics": self.otlp_metrics_endpoint,
            "traces": self.otlp_traces_endpoint,
            "logs": self.otlp_logs_endpoint,
        }[signal]

    @property
    def push_exit_timeout(self) -> float:
        """Seconds of :attr:`shutdown_timeout` for the arbiter's last OTLP push of the merged metrics: the second
        half when it pushes (it can only start once every worker has gone), else none."""
        return self.shutdown_timeout / 2 if "otlp" in self.metrics_exporters else 0.0

    @property
    def worker_exit_timeout(self) -> float:
        """Seconds of :attr:`shutdown_timeout` for an exiting worker's spans, log records and final report: what the
        arbiter's push leaves (workers exit side by side, so each gets all of it)."""
        return self.shutdown_timeout - self.push_exit_timeout

    @property
    def metrics_enabled(self) -> bool:
        """Whether workers report metrics at all (some exporter other than ``none`` is on)."""
        return self.enabled and bool(self.metrics_exporters - {"none"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Build the configuration from ``environ``; raise :class:`ConfigError` on a bad ``OTEL_GUNICORN_*`` value
        or an ``OTEL_GUNICORN_*`` name otel_gunicorn does not read (a typo would otherwise keep the default)."""
        _check_own_names(environ)
        for problem in resource_attribute_problems(environ):
            _log.warning("otel_gunicorn: %s", problem)
        defaults = cls()
        enabled = not _standard_bool(environ, env.OTEL_SDK_DISABLED, default=False)
        exporters = _metrics_exporters(environ)
        protocols = tuple((signal, _otlp_protocol(environ, signal)) for signal in ("metrics", "traces", "logs"))
        traces_url, traces_notes = otlp_endpoint(environ, "traces", dict(protocols)["traces"])
        logs_url, logs_notes = otlp_endpoint(environ, "logs", dict(protocols)["logs"])
        return cls(
            enabled=enabled,
            metrics_exporters=exporters,
            prometheus_host=environ.get(env.OTEL_EXPORTER_PROMETHEUS_HOST, "").strip() or defaults.prometheus_host,
            prometheus_port=_standard_port(environ, env.OTEL_EXPORTER_PROMETHEUS_PORT, defaults.prometheus_port),
            prometheus_web_config=_web_config(environ, env.OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG),
            metrics_interval=_seconds(environ, env.OTEL_GUNICORN_METRICS_INTERVAL, defaults.metrics_interval),
            max_frame_bytes=_int_in_range(
                environ, env.OTEL_GUNICORN_MAX_FRAME_BYTES, defaults.max_frame_bytes, 1024, 256 * 1024 * 1024
            ),
            max_routes=_int_in_range(environ, env.OTEL_GUNICORN_MAX_ROUTES, defaults.max_routes, 1, 100_000),
            slow_request_seconds=_optional_seconds(environ, env.OTEL_GUNICORN_SLOW_REQUEST_SECONDS, longest=86_400),
            channel_dir=_directory(environ, env.OTEL_GUNICORN_CHANNEL_DIR, defaults.channel_dir),
            log_format=log_format(environ),
            metric_export_interval=_standard_millis(environ, env.OTEL_METRIC_EXPORT_INTERVAL, 60_000) / 1000,
            traces_exporter=_standard_choice(environ, env.OTEL_TRACES_EXPORTER, SPAN_AND_LOG_EXPORTERS),
            logs_exporter=_standard_choice(environ, env.OTEL_LOGS_EXPORTER, SPAN_AND_LOG_EXPORTERS),
            otlp_protocols=protocols,
            metrics_temporality=_standard_choice(
                environ, env.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, TEMPORALITY_PREFERENCES
            ),
            shutdown_timeout=_seconds(environ, env.OTEL_GUNICORN_SHUTDOWN_TIMEOUT, defaults.shutdown_timeout),
            exemplar_filter=_standard_choice(environ, env.OTEL_METRICS_EXEMPLAR_FILTER, EXEMPLAR_FILTERS),
            otlp_metrics_endpoint=_otlp_metrics_endpoint(environ, exporters, dict(protocols)["metrics"]),
            otlp_traces_endpoint=traces_url,
            otlp_logs_endpoint=logs_url,
            otlp_endpoint_notes=tuple(
                [("metrics", note) for note in _otlp_metrics_notes(environ, exporters, dict(protocols)["metrics"])]
                + [("traces", note) for note in traces_notes]
                + [("logs", note) for note in logs_notes]
            ),
        )


#: every ``OTEL_GUNICORN_*`` variable otel_gunicorn reads (the constants of ``_environment``)
OWN_VARIABLES = frozenset(v for k, v in vars(env).items() if k.startswith(_OWN_PREFIX) and isinstance(v, str))


def _check_own_names(environ: Mapping[str, str]) -> None:
    """Our prefix is ours: a name under it that we do not read is a typo, and a typo must not pass in silence."""
    for name in sorted(environ):
        if name.startswith(_OWN_PREFIX) and name not in OWN_VARIABLES:
            suffixes = {known.removeprefix(_OWN_PREFIX): known for known in OWN_VARIABLES}
            close = difflib.get_close_matches(name.removeprefix(_OWN_PREFIX), suffixes, n=1, cutoff=0.6)
            hint = f"did you mean {suffixes[close[0]]}?" if close else f"known: {', '.join(sorted(OWN_VARIABLES))}"
            # the value is not shown: a misspelt password variable must not end up in a log
            message = f"{name} is not a variable otel_gunicorn reads: {hint}"
            raise ConfigError(name, environ[name], hint, message=message)


#: accepted values of ``OTEL_GUNICORN_LOG_FORMAT``
LOG_FORMATS = ("console", "json")


def log_format(environ: Mapping[str, str]) -> str:
    """``OTEL_GUNICORN_LOG_FORMAT``: ``console`` (default when unset) or ``json``; else :class:`ConfigError`."""
    raw = environ.get(env.OTEL_GUNICORN_LOG_FORMAT, "").strip()
    if not raw:
        return LOG_FORMATS[0]
    if raw.lower() not in LOG_FORMATS:
        raise ConfigError(env.OTEL_GUNICORN_LOG_FORMAT, raw, " or ".join(LOG_FORMATS))
    return raw.lower()


def fail_fast(exc: ConfigError) -> NoReturn:
    """Stop gunicorn with one line on stderr naming the variable, the value and what is accepted.

    SystemExit rather than an exception: it is not an ``Exception``, so gunicorn's config loader does not turn it into a
    traceback, and raised from a hook in the arbiter it ends the master before any worker forks.
    """
    print(f"otel_gunicorn: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def _standard_bool(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "false"):
        return raw == "true"
    _log.warning("%s=%r is not valid: expected true or false; using %s", name, raw, str(default).lower())
    return default


def _metrics_exporters(environ: Mapping[str, str]) -> frozenset[str]:
    raw = environ.get(env.OTEL_METRICS_EXPORTER, "").strip().lower()
    if not raw:
        return frozenset({"prometheus"})
    names = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = names - METRICS_EXPORTERS
    if unknown:
        _log.warning(
            "%s=%r: ignoring unknown exporter(s) %s; accepted: %s",
            env.OTEL_METRICS_EXPORTER,
            raw,
            ", ".join(sorted(unknown)),
            ", ".join(sorted(METRICS_EXPORTERS)),
        )
    known = frozenset(names & METRICS_EXPORTERS)
    return known or frozenset({"prometheus"})


def resource_attribute_problems(environ: Mapping[str, str]) -> list[str]:
    """What is wrong with ``OTEL_RESOURCE_ATTRIBUTES``, read as the SDK's resource detector reads it (pairs
    separated by commas, each ``key=value``; a pair that is not is skipped): one message naming the variable, its
    value and the pairs left out, or none. The arbiter says it once per server; the SDK's own line, which it would
    repeat in every process at every ``Resource.create``, is held back
    (``_otel_compat.env_resource_warnings_held_back``)."""
    raw = environ.get(env.OTEL_RESOURCE_ATTRIBUTES, "")
    if not raw:
        return []
    bad = [pair for pair in raw.split(",") if "=" not in pair]
    if not bad:
        return []
    skipped = ", ".join(repr(pair) for pair in bad)
    return [
        f"{env.OTEL_RESOURCE_ATTRIBUTES}={raw!r} is not valid: {skipped} is not key=value; expected key=value pairs "
        f"separated by commas (values URL-encoded); ignoring {'it' if len(bad) == 1 else 'them'}"
    ]


def distro_prometheus_port(environ: Mapping[str, str]) -> int | None:
    """``OTEL_EXPORTER_PROMETHEUS_PORT`` read as ``opentelemetry-instrument``'s Prometheus reader reads it (``int()``,
    default 9464), quietly: None when that fails, in which case the reader raised and started no server.
    (otel_gunicorn's own reading, with its warning, is :meth:`Config.from_env`'s.)"""
    try:
        return int(environ.get(env.OTEL_EXPORTER_PROMETHEUS_PORT, "9464"))
    except ValueError:
        return None


def _standard_int(
    environ: Mapping[str, str], name: str, default: int, valid: Callable[[int], bool], accepted: str
) -> int:
    """A standard variable holding an integer: a value that is not one, or not ``valid``, is warned about."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is not None and valid(value):
        return value
    _log.warning("%s=%r is not valid: expected %s; using %d", name, raw, accepted, default)
    return default


def _standard_port(environ: Mapping[str, str], name: str, default: int) -> int:
    return _standard_int(environ, name, default, lambda port: 0 <= port <= 65535, "a TCP port 0-65535")


def _standard_choice(environ: Mapping[str, str], name: str, accepted: tuple[str, ...]) -> str:
    """A standard variable with a fixed set of values; the first of ``accepted`` is the default."""
    raw = environ.get(name, "").strip().lower()
    if not raw or raw in accepted:
        return raw or accepted[0]
    _log.warning("%s=%r is not valid: expected %s; using %s", name, raw, ", ".join(accepted), accepted[0])
    return accepted[0]


def _otlp_protocol(environ: Mapping[str, str], signal: str) -> str:
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    name = specific if environ.get(specific, "").strip() else env.OTEL_EXPORTER_OTLP_PROTOCOL
    return _standard_choice(environ, name, OTLP_PROTOCOLS)


_SIGNAL_PATH = re.compile(r"/v1/(metrics|traces|logs)/*$")


def otlp_metrics_endpoint(environ: Mapping[str, str], protocol: str) -> tuple[str, list[str]]:
    """:func:`otlp_endpoint` for the metrics."""
    return otlp_endpoint(environ, "metrics", protocol)


def otlp_endpoint(environ: Mapping[str, str], signal: str, protocol: str) -> tuple[str, list[str]]:
    """The URL the OTLP exporter of ``signal`` (metrics, traces or logs) sends to, by the specification's rules, and
    what had to be corrected.

    ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` is used as it is; ``OTEL_EXPORTER_OTLP_ENDPOINT`` is a base URL, to
    which http/protobuf adds ``/v1/<signal>`` (grpc takes it as it is). Corrected, one message each: no scheme with
    http/protobuf (``http://`` added; grpc accepts ``host:port``, TLS then as ``OTEL_EXPORTER_OTLP_INSECURE`` says),
    and a base URL that already ends in a signal's path (removed, else the export would go to
    ``/v1/metrics/v1/metrics``)."""
    notes: list[str] = []
    specific_name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    specific = environ.get(specific_name, "").strip()
    base = environ.get(env.OTEL_EXPORTER_OTLP_ENDPOINT, "").strip()
    name, value = (specific_name, specific) if specific else (env.OTEL_EXPORTER_OTLP_ENDPOINT, base)
    path = f"/v1/{signal}"
    if not value:
        return ("http://localhost:4317" if protocol == "grpc" else f"http://localhost:4318{path}"), notes
    url = value
    if protocol != "grpc" and "://" not in url:
        url = f"http://{url}"
        notes.append(f"{name}={value!r} has no scheme: using {url} (expected a URL, http://host:port or https://...)")
    if name == env.OTEL_EXPORTER_OTLP_ENDPOINT and protocol != "grpc":
        stripped = _SIGNAL_PATH.sub("", url)
        if stripped != url:
            notes.append(
                f"{name}={value!r} is a base URL, to which the exporter adds {path}: using {stripped}{path} "
                f"(for a full URL, set {specific_name})"
            )
        url = f"{stripped.rstrip('/')}{path}"
    return url, notes


def _otlp_metrics_endpoint(environ: Mapping[str, str], exporters: frozenset[str], protocol: str) -> str:
    if "otlp" not in exporters:
        return Config.otlp_metrics_endpoint
    url, notes = otlp_metrics_endpoint(environ, protocol)
    for note in notes:
        _log.warning("otel_gunicorn: %s", note)
    return url


def _otlp_metrics_notes(environ: Mapping[str, str], exporters: frozenset[str], protocol: str) -> list[str]:
    return otlp_metrics_endpoint(environ, protocol)[1] if "otlp" in exporters else []


def _standard_millis(environ: Mapping[str, str], name: str, default: int) -> int:
    return _standard_int(environ, name, default, lambda ms: ms > 0, "a positive number of milliseconds")


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _optional_seconds(environ, name)
    return default if value is None else value


def _optional_seconds(environ: Mapping[str, str], name: str, longest: int = 3600) -> float | None:
    """A number of seconds, greater than 0 and at most ``longest``; None when unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    accepted = f"a number of seconds greater than 0 and at most {longest}, e.g. 5 or 0.5"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, raw, accepted) from None
    if not (math.isfinite(value) and 0 < value <= longest):
        raise ConfigError(name, raw, accepted)
    return value


def _int_in_range(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    accepted = f"an integer from {low} to {high}"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, raw, accepted) from None
    if not low <= value <= high:
        raise ConfigError(name, raw, accepted)
    return value


_MAX_UNIX_PATH = 107


def _directory(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not os.path.isdir(raw):
        raise ConfigError(name, raw, "an existing directory")
    # the channel socket goes in a private directory below: unix socket paths are limited to 107 bytes
    longest = os.path.join(os.path.abspath(raw), "otel-gunicorn-xxxxxxxx", "channel.sock")
    if len(os.fsencode(longest)) > _MAX_UNIX_PATH:
        raise ConfigError(name, raw, f"an existing directory with a path of at most {_MAX_UNIX_PATH - 35} bytes")
    return raw


def _web_config(environ: Mapping[str, str], name: str) -> WebConfig | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    # Only parsed here: the certificate and key are loaded by the arbiter's check_config, still before any fork,
    # because building the TLS context is arbiter code, which this lower layer must not import.
    try:
        return load_web_config(raw)
    except WebConfigError as exc:
        raise web_config_error(environ, exc) from None


def web_config_error(environ: Mapping[str, str], problem: Exception) -> ConfigError:
    """The :class:`ConfigError` for a ``problem`` found in the ``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG`` file."""
    name = env.OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG
    return ConfigError(name, environ.get(name, "").strip(), f"a Prometheus web-config file; in it, {problem}")
