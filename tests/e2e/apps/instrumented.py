"""Test application already wrapped by opentelemetry-instrumentation-wsgi, as many production apps are."""

from logging_app import app as _app
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

app = OpenTelemetryMiddleware(_app)
