"""Unit tests for configuration from an explicit environment mapping (otel_gunicorn._config)."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import pytest

from otel_gunicorn._config import Config, ConfigError, otlp_metrics_endpoint
from tests.unit.records import Records


def config_error(environ: dict[str, str]) -> ConfigError:
    """The ConfigError Config.from_env raises for ``environ``."""
    with pytest.raises(ConfigError) as info:
        Config.from_env(environ)
    return info.value


# ---------------------------------------------------------------- defaults


def test_empty_environment_gives_the_defaults() -> None:
    """Nothing set: enabled, Prometheus on localhost:9464, 5 s interval, 16 MiB frames, the temp dir."""
    expected = Config(
        enabled=True,
        metrics_exporters=frozenset({"prometheus"}),
        prometheus_host="localhost",
        prometheus_port=9464,
        metrics_interval=5.0,
        max_frame_bytes=16 * 1024 * 1024,
        channel_dir=tempfile.gettempdir(),
    )

    assert expected == Config.from_env({})


def test_unrelated_variables_are_ignored() -> None:
    """Variables that are not ours change nothing."""
    assert Config.from_env({}) == Config.from_env({"PATH": "/bin", "OTEL_PYTHON_LOG_LEVEL": "debug"})


def test_empty_values_mean_unset(logged: Records) -> None:
    """Variables set to blanks are treated as unset, silently."""
    names = [
        "OTEL_SDK_DISABLED",
        "OTEL_METRICS_EXPORTER",
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        "OTEL_GUNICORN_METRICS_INTERVAL",
        "OTEL_GUNICORN_MAX_FRAME_BYTES",
        "OTEL_GUNICORN_CHANNEL_DIR",
        "OTEL_GUNICORN_SLOW_REQUEST_SECONDS",
    ]

    actual = Config.from_env(dict.fromkeys(names, "  "))

    assert (Config.from_env({}), []) == (actual, logged.messages)


def test_config_is_frozen() -> None:
    """A Config cannot be changed after it is built."""
    config = Config.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.prometheus_port = 1  # type: ignore[misc]

    assert 9464 == config.prometheus_port


def test_default_metrics_enabled() -> None:
    """By default workers report metrics."""
    assert True is Config.from_env({}).metrics_enabled


# ---------------------------------------------------------------- OTEL_SDK_DISABLED


@pytest.mark.parametrize(("raw", "enabled"), [("true", False), ("TRUE", False), (" True ", False), ("false", True)])
def test_sdk_disabled(raw: str, enabled: bool) -> None:
    """OTEL_SDK_DISABLED=true (any case) turns everything off; false leaves it on."""
    assert enabled == Config.from_env({"OTEL_SDK_DISABLED": raw}).enabled


def test_sdk_disabled_turns_metrics_off() -> None:
    """A disabled SDK reports no metrics even with an exporter configured."""
    assert (
        False is Config.from_env({"OTEL_SDK_DISABLED": "true", "OTEL_METRICS_EXPORTER": "prometheus"}).metrics_enabled
    )


def test_sdk_disabled_bad_value_warns_and_stays_enabled(logged: Records) -> None:
    """A value other than true/false is warned about and the default (enabled) used."""
    config = Config.from_env({"OTEL_SDK_DISABLED": "yes"})

    expected = (True, [(logging.WARNING, "OTEL_SDK_DISABLED='yes' is not valid: expected true or false; using false")])

    assert expected == (config.enabled, logged.messages)


# ---------------------------------------------------------------- OTEL_METRICS_EXPORTER


def test_metrics_exporter_none_disables_metrics() -> None:
    """OTEL_METRICS_EXPORTER=none keeps the SDK on but reports no metrics."""
    config = Config.from_env({"OTEL_METRICS_EXPORTER": "none"})

    assert (frozenset({"none"}), True, False) == (config.metrics_exporters, config.enabled, config.metrics_enabled)


def test_metrics_exporter_is_case_and_space_insensitive() -> None:
    """' Prometheus ' is prometheus."""
    assert frozenset({"prometheus"}) == Config.from_env({"OTEL_METRICS_EXPORTER": " Prometheus "}).metrics_exporters


def test_unknown_metrics_exporter_warns_and_uses_the_default(logged: Records) -> None:
    """An unknown exporter name is warned about (naming what is accepted) and prometheus used."""
    config = Config.from_env({"OTEL_METRICS_EXPORTER": "carrier-pigeon"})

    expected = (
        frozenset({"prometheus"}),
        [
            (
                logging.WARNING,
                "OTEL_METRICS_EXPORTER='carrier-pigeon': ignoring unknown exporter(s) carrier-pigeon; "
                "accepted: none, otlp, prometheus",
            )
        ],
    )

    assert expected == (config.metrics_exporters, logged.messages)


def test_unknown_exporter_beside_a_known_one_is_dropped(logged: Records) -> None:
    """In a list, unknown names are dropped with a warning and the known ones kept."""
    config = Config.from_env({"OTEL_METRICS_EXPORTER": "none,carrier-pigeon"})

    assert (frozenset({"none"}), 1) == (config.metrics_exporters, len(logged.messages))


def test_only_separators_in_metrics_exporter_mean_the_default() -> None:
    """A list of nothing (',,') is the default."""
    assert frozenset({"prometheus"}) == Config.from_env({"OTEL_METRICS_EXPORTER": ",,"}).metrics_exporters


# ---------------------------------------------------------------- Prometheus host and port


def test_prometheus_host_and_port_are_read() -> None:
    """Host and port come from the standard variables."""
    config = Config.from_env({"OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0", "OTEL_EXPORTER_PROMETHEUS_PORT": "9100"})

    assert ("0.0.0.0", 9100) == (config.prometheus_host, config.prometheus_port)


@pytest.mark.parametrize("port", ["0", "65535"])
def test_port_range_edges_are_accepted(port: str) -> None:
    """0 (pick a free port) and 65535 are valid ports."""
    assert int(port) == Config.from_env({"OTEL_EXPORTER_PROMETHEUS_PORT": port}).prometheus_port


@pytest.mark.parametrize("raw", ["http", "-1", "65536", "94.64", "1e3"])
def test_bad_standard_port_warns_and_uses_the_default(raw: str, logged: Records) -> None:
    """An invalid OTEL_EXPORTER_PROMETHEUS_PORT is warned about and 9464 used (the OTel rule, not an error)."""
    config = Config.from_env({"OTEL_EXPORTER_PROMETHEUS_PORT": raw})

    expected = (
        9464,
        [
            (
                logging.WARNING,
                f"OTEL_EXPORTER_PROMETHEUS_PORT={raw!r} is not valid: expected a TCP port 0-65535; using 9464",
            )
        ],
    )

    assert expected == (config.prometheus_port, logged.messages)


# ---------------------------------------------------------------- OTEL_GUNICORN_METRICS_INTERVAL


@pytest.mark.parametrize(
    ("raw", "seconds"), [("1", 1.0), ("0.25", 0.25), (" 2.5 ", 2.5), ("3600", 3600.0), ("1e-3", 0.001)]
)
def test_metrics_interval_accepts_positive_seconds(raw: str, seconds: float) -> None:
    """Fractions of a second up to an hour are accepted."""
    assert seconds == Config.from_env({"OTEL_GUNICORN_METRICS_INTERVAL": raw}).metrics_interval


@pytest.mark.parametrize("raw", ["soon", "0", "-1", "nan", "inf", "-inf", "3600.5", "5s"])
def test_bad_metrics_interval_raises_naming_variable_value_and_accepted(raw: str) -> None:
    """A bad interval is a ConfigError whose message names the variable, the value and what is accepted."""
    error = config_error({"OTEL_GUNICORN_METRICS_INTERVAL": raw})

    expected = (
        f"OTEL_GUNICORN_METRICS_INTERVAL={raw!r} is not valid: "
        "expected a number of seconds greater than 0 and at most 3600, e.g. 5 or 0.5"
    )

    assert expected == str(error)


# ---------------------------------------------------------------- OTEL_GUNICORN_SLOW_REQUEST_SECONDS


def test_the_slow_request_check_is_off_unless_set() -> None:
    assert None is Config.from_env({}).slow_request_seconds


@pytest.mark.parametrize(("raw", "seconds"), [("1", 1.0), (" 0.5 ", 0.5), ("86400", 86400.0), ("2e1", 20.0)])
def test_the_slow_request_threshold_accepts_positive_seconds_up_to_a_day(raw: str, seconds: float) -> None:
    assert seconds == Config.from_env({"OTEL_GUNICORN_SLOW_REQUEST_SECONDS": raw}).slow_request_seconds


@pytest.mark.parametrize("raw", ["slow", "0", "-3", "nan", "inf", "86401", "1s"])
def test_a_bad_slow_request_threshold_raises_naming_variable_value_and_accepted(raw: str) -> None:
    """One message naming the variable, the value and what is accepted, as for every variable of ours."""
    expected = (
        f"OTEL_GUNICORN_SLOW_REQUEST_SECONDS={raw!r} is not valid: "
        "expected a number of seconds greater than 0 and at most 86400, e.g. 5 or 0.5"
    )
    assert expected == str(config_error({"OTEL_GUNICORN_SLOW_REQUEST_SECONDS": raw}))


def test_config_error_carries_its_parts() -> None:
    """ConfigError exposes variable, value and accepted separately."""
    error = config_error({"OTEL_GUNICORN_METRICS_INTERVAL": "soon"})

    expected = (
        "OTEL_GUNICORN_METRICS_INTERVAL",
        "soon",
        "a number of seconds greater than 0 and at most 3600, e.g. 5 or 0.5",
    )

    assert expected == (error.variable, error.value, error.accepted)


def test_config_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch ConfigError."""
    assert True is isinstance(config_error({"OTEL_GUNICORN_METRICS_INTERVAL": "0"}), ValueError)


# ---------------------------------------------------------------- OTEL_GUNICORN_MAX_FRAME_BYTES


@pytest.mark.parametrize("raw", ["1024", "268435456", "1048576"])
def test_max_frame_bytes_in_range_is_accepted(raw: str) -> None:
    """1024 to 256 MiB inclusive is accepted."""
    assert int(raw) == Config.from_env({"OTEL_GUNICORN_MAX_FRAME_BYTES": raw}).max_frame_bytes


@pytest.mark.parametrize("raw", ["1023", "268435457", "0", "-5", "1.5", "16MiB", "big"])
def test_max_frame_bytes_out_of_range_raises(raw: str) -> None:
    """Outside 1024..268435456 or not an integer is a ConfigError naming the range."""
    error = config_error({"OTEL_GUNICORN_MAX_FRAME_BYTES": raw})

    expected = f"OTEL_GUNICORN_MAX_FRAME_BYTES={raw!r} is not valid: expected an integer from 1024 to 268435456"

    assert expected == str(error)


# ---------------------------------------------------------------- OTEL_GUNICORN_CHANNEL_DIR


def test_existing_channel_dir_is_accepted(tmp_path: Path) -> None:
    """An existing directory is used as given."""
    assert str(tmp_path) == Config.from_env({"OTEL_GUNICORN_CHANNEL_DIR": str(tmp_path)}).channel_dir


def test_missing_channel_dir_raises(tmp_path: Path) -> None:
    """A directory that does not exist is a ConfigError."""
    missing = str(tmp_path / "missing")

    expected = f"OTEL_GUNICORN_CHANNEL_DIR={missing!r} is not valid: expected an existing directory"

    assert expected == str(config_error({"OTEL_GUNICORN_CHANNEL_DIR": missing}))


def test_channel_dir_that_is_a_file_raises(tmp_path: Path) -> None:
    """A regular file is not a directory."""
    path = tmp_path / "file"
    path.write_text("")

    assert "OTEL_GUNICORN_CHANNEL_DIR" == config_error({"OTEL_GUNICORN_CHANNEL_DIR": str(path)}).variable


# ---------------------------------------------------------------- OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG

# a bcrypt hash of "secret" at cost 4 (a format check only: nothing here verifies it)
HASH = "$2b$04$Ua9UUtGQ2o9b6WZyGRwMc.9oUzjshHLUXwyZPuVpQkSFVNMTDqXji"


def test_web_config_unset_is_none() -> None:
    """Without a web-config the endpoint stays plain HTTP without authentication."""
    assert None is Config.from_env({}).prometheus_web_config


def test_web_config_is_parsed(tmp_path: Path) -> None:
    """The file the variable names is parsed into the Config."""
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n")

    web = Config.from_env({"OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG": str(path)}).prometheus_web_config

    assert web is not None
    assert {"alice": HASH.encode()} == web.users


def test_bad_web_config_raises_without_showing_the_secret(tmp_path: Path) -> None:
    """A plain password where a hash belongs is a ConfigError naming the variable, file and key, not the value."""
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: hunter2\n")

    message = str(config_error({"OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG": str(path)}))

    expected = (
        f"OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG={str(path)!r} is not valid: expected a Prometheus web-config file; "
        "in it, basic_auth_users.alice is not a bcrypt hash"
    )
    assert (True, False) == (message.startswith(expected), "hunter2" in message)


def test_a_misspelt_own_variable_is_refused_with_the_name_meant():
    """OTEL_GUNICORN_METRIC_INTERVAL (no S) is not silently ignored: the error names the variable meant."""
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"OTEL_GUNICORN_METRIC_INTERVAL": "1"})
    assert "did you mean OTEL_GUNICORN_METRICS_INTERVAL?" in str(caught.value)


def test_an_unknown_own_variable_never_shows_its_value():
    """The value of an unknown OTEL_GUNICORN_* variable stays out of the message: it may be a misspelt secret."""
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"OTEL_GUNICORN_TOP_PASWORD": "hunter2"})
    assert ("hunter2" not in str(caught.value), "OTEL_GUNICORN_TOP_PASSWORD" in str(caught.value)) == (True, True)


def test_every_variable_otel_gunicorn_documents_is_accepted():
    """Each documented OTEL_GUNICORN_* name passes the name check (their values are checked elsewhere)."""
    from otel_gunicorn import _config

    for name in _config.OWN_VARIABLES:
        _config._check_own_names({name: ""})


# ---------------------------------------------------------------- OTEL_METRICS_EXEMPLAR_FILTER


@pytest.mark.parametrize(
    ("raw", "chosen"),
    [("", "trace_based"), ("always_off", "always_off"), (" Always_On ", "always_on"), ("TRACE_BASED", "trace_based")],
)
def test_the_exemplar_filter_is_read_case_insensitively(raw: str, chosen: str) -> None:
    assert chosen == Config.from_env({"OTEL_METRICS_EXEMPLAR_FILTER": raw}).exemplar_filter


def test_a_bad_exemplar_filter_is_one_warning_in_the_arbiter_and_trace_based(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_gunicorn"):
        assert "trace_based" == Config.from_env({"OTEL_METRICS_EXEMPLAR_FILTER": "sampled"}).exemplar_filter
    assert [
        "OTEL_METRICS_EXEMPLAR_FILTER='sampled' is not valid: expected trace_based, always_on, always_off; "
        "using trace_based"
    ] == [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("environ", "protocol", "expected"),
    [
        ({}, "http/protobuf", "http://localhost:4318/v1/metrics"),
        ({}, "grpc", "http://localhost:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "http/protobuf", "http://c:4318/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "http/protobuf", "http://c:4318/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "grpc", "http://c:4317"),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c/in"}, "http/protobuf", "http://c/in"),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c/in", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://b"},
            "http/protobuf",
            "http://c/in",
        ),
    ],
)
def test_otlp_metrics_endpoint_follows_the_specifications_base_and_signal_rules(environ, protocol, expected):
    """A signal-specific URL as it is; a base URL gets /v1/metrics over http/protobuf; nothing to correct."""
    assert (expected, []) == otlp_metrics_endpoint(environ, protocol)


def test_otlp_endpoint_without_a_scheme_gets_http_with_one_note():
    """``localhost:4318`` reaches nothing over http/protobuf: ``http://`` is added, and said."""
    url, notes = otlp_metrics_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "http/protobuf")
    assert ("http://localhost:4318/v1/metrics", 1) == (url, len(notes))
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='localhost:4318' has no scheme" in notes[0]


def test_otlp_base_endpoint_with_the_signals_path_loses_it_with_one_note():
    """A base URL ending in /v1/metrics would be pushed to /v1/metrics/v1/metrics: the path is removed, and said."""
    url, notes = otlp_metrics_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/metrics"}, "http/protobuf")
    assert ("http://c:4318/v1/metrics", 1) == (url, len(notes))
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in notes[0]


def test_a_corrected_endpoint_is_warned_about_once_when_the_configuration_is_read(logged):
    """Config.from_env logs each correction once, and only when metrics are pushed over OTLP."""
    environ = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}
    config = Config.from_env(environ)
    Config.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"})  # prometheus: not pushed, not said
    assert "http://localhost:4318/v1/metrics" == config.otlp_metrics_endpoint
    assert 1 == sum("has no scheme" in message for _level, message in logged.messages)
