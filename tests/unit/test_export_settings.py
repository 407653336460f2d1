"""OTEL_GUNICORN_SHUTDOWN_TIMEOUT and OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: read, checked, and honoured
by the arbiter's OTLP pusher (which hands the exporter process the validated preference and kills it on time)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

import pytest

from otel_gunicorn._arbiter import otlp
from otel_gunicorn._config import Config, ConfigError
from otel_gunicorn._fork import ForkLock
from tests.unit.records import Records

TIMEOUT = "OTEL_GUNICORN_SHUTDOWN_TIMEOUT"
PREFERENCE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"


# ---------------------------------------------------------------- the shutdown budget


def test_the_default_budget_is_1_s_split_between_workers_and_the_arbiters_push() -> None:
    """With an OTLP push, each half; without, the workers get it all."""
    pushing = Config.from_env({"OTEL_METRICS_EXPORTER": "otlp"})
    scraped = Config.from_env({})

    assert (1.0, 0.5, 0.5) == (pushing.shutdown_timeout, pushing.worker_exit_timeout, pushing.push_exit_timeout)
    assert (1.0, 0.0) == (scraped.worker_exit_timeout, scraped.push_exit_timeout)


@pytest.mark.parametrize(("raw", "seconds"), [("2", 2.0), (" 0.25 ", 0.25), ("3600", 3600.0)])
def test_the_budget_accepts_positive_seconds(raw: str, seconds: float) -> None:
    assert seconds == Config.from_env({TIMEOUT: raw}).shutdown_timeout


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf", "3601", "1s"])
def test_a_bad_budget_stops_gunicorn_naming_variable_value_and_accepted(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({TIMEOUT: raw})

    assert (TIMEOUT, raw) == (caught.value.variable, caught.value.value)
    assert str(caught.value).startswith(f"{TIMEOUT}={raw!r} is not valid: expected a number of seconds")


# ---------------------------------------------------------------- the temporality preference


@pytest.mark.parametrize(
    ("raw", "preference"),
    [("", "cumulative"), ("cumulative", "cumulative"), ("delta", "delta"), (" LowMemory ", "lowmemory")],
)
def test_the_temporality_preference_is_read_case_insensitively(raw: str, preference: str, logged: Records) -> None:
    assert (preference, []) == (Config.from_env({PREFERENCE: raw}).metrics_temporality, logged.messages)


def test_a_bad_temporality_preference_is_one_warning_and_cumulative(logged: Records) -> None:
    """The OpenTelemetry rule for a standard variable: warn, naming variable, value and what is accepted; default."""
    assert "cumulative" == Config.from_env({PREFERENCE: "deltas"}).metrics_temporality
    assert [
        (
            logging.WARNING,
            f"{PREFERENCE}='deltas' is not valid: expected cumulative, delta, lowmemory; using cumulative",
        )
    ] == logged.messages


# ---------------------------------------------------------------- the pusher honours both


#: an exporter process stuck on a collector that never answers: it reads nothing and exits only when killed
STUCK = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
REAL_POPEN = subprocess.Popen


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """How the pusher starts its exporter process (arguments and keywords); what starts is :data:`STUCK`."""
    calls: list[dict[str, Any]] = []

    def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        calls.append({"args": args, **kwargs})
        return REAL_POPEN(STUCK, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return calls


def pusher(**kwargs: Any) -> otlp.OtlpPusher:
    return otlp.OtlpPusher("http/protobuf", 60.0, lambda: {"metrics": []}, ForkLock(), **kwargs)


def test_the_exporter_process_gets_the_validated_preference(started: list[dict[str, Any]], monkeypatch):
    """A bad value in the arbiter's environment was warned about there; the child sees the value used instead."""
    monkeypatch.setenv(PREFERENCE, "deltas")
    config = Config.from_env({PREFERENCE: "deltas"})
    feeder = pusher(temporality=config.metrics_temporality, shutdown_timeout=0.1)

    feeder.start()
    feeder.stop()

    assert "cumulative" == started[0]["env"][PREFERENCE]


def test_stop_kills_an_exporter_process_still_busy_when_its_share_of_the_budget_is_spent(
    started: list[dict[str, Any]], logged: Records
) -> None:
    """The exporter process stuck on a collector that never answers: stop() returns after the arbiter's share (not
    after the 15 s it used to wait), the process is gone, and a warning says what was lost."""
    feeder = pusher(shutdown_timeout=0.3)
    feeder.start()
    process = feeder._process
    assert process is not None

    began = time.monotonic()
    feeder.stop()
    elapsed = time.monotonic() - began

    assert (True, True) == (0.3 <= elapsed < 1.0, process.poll() is not None)
    warnings = [m for level, m in logged.messages if level == logging.WARNING]
    assert 1 == len(warnings) and "had not delivered the last metrics after 0.3 s" in warnings[0], warnings
