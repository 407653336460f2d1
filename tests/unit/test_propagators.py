"""OTEL_PROPAGATORS cleaned of names no installed package provides, before the OpenTelemetry API reads it."""

from __future__ import annotations

import pytest

from otel_gunicorn import _propagators


@pytest.fixture(autouse=True)
def _no_warning_left_behind():
    yield
    _propagators.take_pending_warning()  # the arbiter would log it in a later test


@pytest.mark.parametrize(
    ("value", "kept"),
    [("foo", "tracecontext,baggage"), ("tracecontext, foo,baggage", "tracecontext,baggage"), ("b4,zz", None)],
)
def test_unknown_names_are_dropped_with_a_warning(value, kept):
    environ = {"OTEL_PROPAGATORS": value}
    warning = _propagators.drop_unknown(environ)
    assert warning is not None and "no installed propagator is called" in warning
    assert (kept or _propagators.DEFAULT) == environ["OTEL_PROPAGATORS"]


@pytest.mark.parametrize("value", ["", "tracecontext", "baggage,tracecontext", "none", "foo,none"])
def test_good_values_are_left_alone(value):
    """``none`` switches propagation off whatever else is listed, as the API does."""
    environ = {"OTEL_PROPAGATORS": value}
    assert _propagators.drop_unknown(environ) is None
    assert {"OTEL_PROPAGATORS": value} == environ


def test_unset_is_left_unset():
    environ: dict[str, str] = {}
    assert _propagators.drop_unknown(environ) is None
    assert {} == environ
