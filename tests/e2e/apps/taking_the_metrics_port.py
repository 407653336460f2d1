"""A gunicorn configuration module that, besides otel_gunicorn's hooks, starts prometheus_client's own server on the
metrics port in the arbiter, as a user's older configuration might: the port is then taken by the arbiter itself."""

import os

from prometheus_client import start_http_server

from otel_gunicorn.hooks import *  # noqa: F403

start_http_server(int(os.environ["OTEL_EXPORTER_PROMETHEUS_PORT"]), addr=os.environ["OTEL_EXPORTER_PROMETHEUS_HOST"])
