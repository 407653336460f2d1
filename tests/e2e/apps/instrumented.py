"""Test application already wrapped by opentelemetry-instrumentation-wsgi, as many production apps are."""

from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from logging_app import app as _app

app = OpenTelemetryMiddleware(_app)
