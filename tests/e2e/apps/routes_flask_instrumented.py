"""``routes_flask``'s application with OpenTelemetry's Flask instrumentation applied, as its users do: the
instrumentation records ``http.server.request.duration`` with ``http.route`` (scope
``opentelemetry.instrumentation.flask``) under ``OTEL_SEMCONV_STABILITY_OPT_IN=http``."""

from opentelemetry.instrumentation.flask import FlaskInstrumentor
from routes_flask import app

FlaskInstrumentor().instrument_app(app)
