"""The take-over of opentelemetry-instrument's metrics set-up, in one process (the real thing:
tests/e2e/test_opentelemetry_instrument.py).

Pins what it relies on in the API and in the Prometheus exporter, so that an upgrade that moves one fails here."""

from __future__ import annotations

import socket

import pytest
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_gunicorn._arbiter import autoinstrument
from otel_gunicorn._arbiter.runtime import STATE
from otel_gunicorn._otel_compat import reset_meter_provider


@pytest.fixture(autouse=True)
def _clean_globals():
    reset_meter_provider()
    STATE.reset()
    yield
    reset_meter_provider()
    STATE.reset()


def _total(reader: InMemoryMetricReader, name: str) -> float:
    data = reader.get_metrics_data()
    values = [
        getattr(p, "value", 0)
        for rm in (data.resource_metrics if data else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]
    return float(sum(values))


def test_after_the_reset_an_instrument_binds_to_the_provider_set_later():
    """An instrument made between the reset and the worker's provider (Django's, in instrument()) reports to the
    worker's provider, not to the distro's."""
    distro_reader, ours_reader = InMemoryMetricReader(), InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[distro_reader]))  # the configurator
    reset_meter_provider()  # pre_instrument
    counter = metrics.get_meter("instrumentor").create_counter("made.at.instrument.time")
    metrics.set_meter_provider(MeterProvider(metric_readers=[ours_reader]))  # the worker, after the fork
    counter.add(3)
    assert (3, 0) == (_total(ours_reader, "made.at.instrument.time"), _total(distro_reader, "made.at.instrument.time"))


def test_without_the_reset_the_later_provider_is_refused():
    """The API's slot is set once: the reason for the reset."""
    metrics.set_meter_provider(first := MeterProvider())
    metrics.set_meter_provider(MeterProvider())
    assert first is metrics.get_meter_provider()


@pytest.mark.parametrize(
    ("argv", "orig_argv", "expected"),
    [
        (["/venv/bin/gunicorn", "app:app"], ["/venv/bin/python3", "/venv/bin/gunicorn", "app:app"], True),
        (["-m", "app:app"], ["/venv/bin/python", "-m", "gunicorn", "app:app"], True),
        (["-m"], ["/venv/bin/python", "-m", "otel_gunicorn._exporter", "grpc"], False),
        (["manage.py", "migrate"], ["python", "manage.py", "migrate"], False),
    ],
)
def test_only_gunicorn_is_taken_over(argv, orig_argv, expected):
    """The gunicorn script or ``python -m gunicorn``; not the exporter process, not a management command."""
    assert expected == autoinstrument.is_gunicorn(argv, orig_argv)


def test_take_over_frees_the_port_of_the_prometheus_exporters_server(monkeypatch):
    """The configurator's Prometheus reader starts a server it never returns; the take-over finds and closes it."""
    from opentelemetry.exporter.prometheus import _AutoPrometheusMetricReader

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(port))
    STATE.distro_meter_provider = MeterProvider(metric_readers=[_AutoPrometheusMetricReader()])
    autoinstrument.take_over()
    assert ("its MeterProvider", f"its Prometheus endpoint on 127.0.0.1:{port}") == STATE.distro_stopped
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))  # free again: raises if the server still listened


def test_take_over_without_a_held_provider_does_nothing():
    """Without opentelemetry-instrument (or outside gunicorn) nothing was held and nothing is stopped."""
    autoinstrument.take_over()
    assert () == STATE.distro_stopped


def test_pre_instrument_holds_the_configurators_provider_in_gunicorn(monkeypatch):
    """In gunicorn, the provider set by the configurator leaves the global slot and is held."""
    monkeypatch.setattr("sys.argv", ["/venv/bin/gunicorn", "app:app"])
    metrics.set_meter_provider(distro := MeterProvider())
    autoinstrument.pre_instrument()
    assert (distro, False) == (STATE.distro_meter_provider, metrics.get_meter_provider() is distro)


def test_a_provider_nobody_took_over_goes_back_before_the_fork():
    """Without otel_gunicorn's hooks, the fork handler puts the distro's provider back, once."""
    STATE.distro_meter_provider = provider = MeterProvider()
    autoinstrument.put_back()
    autoinstrument.put_back()
    assert (provider, None) == (metrics.get_meter_provider(), STATE.distro_meter_provider)
