"""Where the workers' spans and log records go: the specification's base vs signal-specific endpoint rules for
traces and logs, and the arbiter's one line per signal with one warning per correction (not one per worker)."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_gunicorn._arbiter import exports
from otel_gunicorn._config import Config, otlp_endpoint
from tests.unit.records import Records


@pytest.fixture(autouse=True)
def no_global_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in an arbiter not started by opentelemetry-instrument, whatever other tests set globally."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    monkeypatch.setattr(exports, "get_logger_provider", lambda: None)


BASE_PATH = (
    "OTEL_EXPORTER_OTLP_ENDPOINT='http://c:4318/v1/metrics' is a base URL, to which the exporter adds /v1/{signal}: "
    "using http://c:4318/v1/{signal} (for a full URL, set OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT)"
)


@pytest.mark.parametrize("signal", ["traces", "logs"])
@pytest.mark.parametrize(
    ("environ", "protocol", "expected"),
    [
        ({}, "http/protobuf", "http://localhost:4318/v1/{signal}"),
        ({}, "grpc", "http://localhost:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http/protobuf", "http://c:4318/v1/{signal}"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http/protobuf", "http://c:4318/v1/{signal}"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "c:4317"}, "grpc", "c:4317"),
        (
            {"OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT": "http://c/x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b"},
            "http/protobuf",
            "http://c/x",
        ),
    ],
)
def test_span_and_log_endpoints_follow_the_base_and_signal_rules(signal, environ, protocol, expected):
    """The signal's own variable is used as given; the base one gets ``/v1/<signal>`` over http/protobuf only."""
    environ = {k.format(SIGNAL=signal.upper()): v for k, v in environ.items()}
    assert (expected.format(signal=signal), []) == otlp_endpoint(environ, signal, protocol)


@pytest.mark.parametrize("signal", ["traces", "logs"])
def test_a_base_endpoint_with_a_signal_path_loses_it(signal):
    """``.../v1/metrics`` in the base URL (a metrics URL reused) is replaced by the signal's path, with one note."""
    url, notes = otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/metrics"}, signal, "http/protobuf")
    assert (f"http://c:4318/v1/{signal}", [BASE_PATH.format(signal=signal, SIGNAL=signal.upper())]) == (url, notes)


def test_the_workers_get_the_corrected_urls_and_the_arbiter_the_notes():
    """Config carries each signal's URL and the notes, the same scheme note once per signal."""
    config = Config.from_env(
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}
    )
    scheme = (
        "OTEL_EXPORTER_OTLP_ENDPOINT='c:4318' has no scheme: using http://c:4318 (expected a URL, http://host:port "
        "or https://...)"
    )
    assert ("http://c:4318/v1/traces", "http://c:4318/v1/logs", (("traces", scheme), ("logs", scheme))) == (
        config.otlp_endpoint("traces"),
        config.otlp_endpoint("logs"),
        config.otlp_endpoint_notes,
    )


def test_the_arbiter_says_each_correction_once_and_where_each_signal_goes(logged: Records):
    """One warning for the scheme shared by metrics, traces and logs (metrics' said by from_env already); one line
    per exported signal with the URL and protocol."""
    environ = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318",
    }
    exports.report(Config.from_env(environ))
    assert [
        (
            logging.WARNING,
            "otel_gunicorn: OTEL_EXPORTER_OTLP_ENDPOINT='c:4318' has no scheme: using http://c:4318 "
            "(expected a URL, http://host:port or https://...)",
        ),
        (logging.INFO, "otel_gunicorn: the workers export their spans to http://c:4318/v1/traces (OTLP http/protobuf)"),
        (logging.INFO, "otel_gunicorn: the workers print their log records on stdout (OTEL_LOGS_EXPORTER=console)"),
    ] == logged.messages


def test_under_the_distros_tracer_provider_no_url_is_claimed(logged: Records, monkeypatch: pytest.MonkeyPatch):
    """A global SDK TracerProvider set before gunicorn started (opentelemetry-instrument's) is what the workers use:
    the line names it rather than a URL, and nothing is said about corrections otel_gunicorn does not apply."""
    monkeypatch.setattr(trace, "get_tracer_provider", TracerProvider)
    exports.report(Config.from_env({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "c:4318"}))
    assert [
        (
            logging.INFO,
            "otel_gunicorn: the workers' spans go through opentelemetry-instrument's TracerProvider, set up "
            "before gunicorn started; its exporters read the OTEL_EXPORTER_OTLP_* variables themselves",
        ),
    ] == logged.messages


def test_nothing_is_said_for_signals_not_exported(logged: Records):
    exports.report(Config.from_env({}))
    assert [] == logged.messages
