"""Where the workers' spans and log records go, said once per server by the arbiter, with what it had to correct.

Runs in the arbiter, in ``on_starting``, before any fork. The workers build their span and log exporters after the
fork from the inherited ``Config``: ``otlp_traces_endpoint`` and ``otlp_logs_endpoint``, resolved by the
specification's base vs signal-specific endpoint rules (:func:`otel_gunicorn._config.otlp_endpoint`, which notes
what it corrected). Were the workers to say what was corrected, every worker would say it, and again after each
recycling. Under ``opentelemetry-instrument`` the workers reuse the distro's TracerProvider and LoggerProvider, whose
exporters read ``OTEL_EXPORTER_OTLP_*`` themselves: the line says so instead of a URL otel_gunicorn does not use.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_gunicorn._config import Config
from otel_gunicorn._otel_compat import LoggerProvider, get_logger_provider

_log = logging.getLogger("otel_gunicorn")

#: (signal, what is exported, its exporter variable)
_SIGNALS = (("traces", "spans", "OTEL_TRACES_EXPORTER"), ("logs", "log records", "OTEL_LOGS_EXPORTER"))


def report(config: Config) -> None:
    """One line per exported signal: the URL and protocol (after one warning per correction), stdout for
    ``console``, or the distro's provider; nothing for a signal that is not exported."""
    if not config.enabled:
        return
    # one line per message: OTEL_EXPORTER_OTLP_ENDPOINT without a scheme is one mistake, whatever it serves
    said = {note for signal, note in config.otlp_endpoint_notes if signal == "metrics"}  # from_env said those
    for signal, what, variable in _SIGNALS:
        exporter = config.traces_exporter if signal == "traces" else config.logs_exporter
        if exporter == "none":
            continue
        if _distro_provider(signal):
            _log.info(
                "otel_gunicorn: the workers' %s go through opentelemetry-instrument's %sProvider, set up before "
                "gunicorn started; its exporters read the OTEL_EXPORTER_OTLP_* variables themselves",
                what,
                "Tracer" if signal == "traces" else "Logger",
            )
            continue
        if exporter == "console":
            _log.info("otel_gunicorn: the workers print their %s on stdout (%s=console)", what, variable)
            continue
        for note in (note for noted, note in config.otlp_endpoint_notes if noted == signal and note not in said):
            said.add(note)
            _log.warning("otel_gunicorn: %s", note)
        _log.info(
            "otel_gunicorn: the workers export their %s to %s (OTLP %s)",
            what,
            config.otlp_endpoint(signal),
            config.otlp_protocol(signal),
        )


def _distro_provider(signal: str) -> bool:
    """Whether the global provider of ``signal`` is an SDK one already (set in the arbiter before gunicorn read its
    configuration: opentelemetry-instrument's), which the workers then reuse."""
    if signal == "traces":
        return isinstance(trace.get_tracer_provider(), TracerProvider)
    return isinstance(get_logger_provider(), LoggerProvider)
