"""Every environment variable otel_gunicorn reads, as a constant with its documentation.

The docstring under each constant is the reference text: ``docs/configuration.md`` is generated from it
(``python -m otel_gunicorn._docs``) and a test fails when the page is stale. Only
:func:`otel_gunicorn._config.Config.from_env` reads the environment; everything else gets a ``Config``.
"""

OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
"""Standard. ``true`` turns otel_gunicorn off completely: no threads, no sockets, no endpoint. Default ``false``."""

OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""Standard. ``service.name`` of the server's resource (shown in ``target_info``). Read by the OpenTelemetry SDK."""

OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
"""Standard. Extra resource attributes, ``key=value,key=value``. Read by the OpenTelemetry SDK."""

OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
"""Standard. Comma-separated exporters for the merged metrics: ``prometheus`` (the endpoint in the arbiter),
``none``. Unset means ``prometheus``: an endpoint that works with nothing else running. An unknown value is
warned about and ignored, as the OpenTelemetry specification asks."""

OTEL_EXPORTER_PROMETHEUS_HOST = "OTEL_EXPORTER_PROMETHEUS_HOST"
"""Standard. Address the arbiter's Prometheus endpoint binds to. Default ``localhost``: nothing outside the
machine can scrape it unless you say so."""

OTEL_EXPORTER_PROMETHEUS_PORT = "OTEL_EXPORTER_PROMETHEUS_PORT"
"""Standard. TCP port of the arbiter's Prometheus endpoint, 0–65535 (0 picks a free port and logs it).
Default ``9464``. An invalid value is warned about and the default used."""

OTEL_GUNICORN_METRICS_INTERVAL = "OTEL_GUNICORN_METRICS_INTERVAL"
"""Seconds (a positive number, fractions allowed, at most 3600) between two reports of a worker to the arbiter.
Default ``5``. A metric recorded in a worker reaches the endpoint within one interval; a worker killed with
SIGKILL loses at most its last interval."""

OTEL_GUNICORN_MAX_FRAME_BYTES = "OTEL_GUNICORN_MAX_FRAME_BYTES"
"""Largest report (bytes, 1024 to 268435456) the arbiter accepts from one worker. Default ``16777216`` (16 MiB).
A larger report is dropped and counted; raise this only for applications with a very large number of series."""

OTEL_GUNICORN_CHANNEL_DIR = "OTEL_GUNICORN_CHANNEL_DIR"
"""Existing directory in which the arbiter creates its private (mode 0700) directory holding the unix socket
workers report through. Default: the system temporary directory."""
