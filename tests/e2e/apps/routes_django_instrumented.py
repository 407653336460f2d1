"""``routes_django`` with OpenTelemetry's Django instrumentation, as its users turn it on (``instrument()`` once the
settings exist, before the handler loads its middleware): it records ``http.server.request.duration`` with
``http.route`` (scope ``opentelemetry.instrumentation.django``) under ``OTEL_SEMCONV_STABILITY_OPT_IN=http``."""

import routes_django  # noqa: F401 - configures the settings and declares the URLs
from django.core.wsgi import get_wsgi_application
from opentelemetry.instrumentation.django import DjangoInstrumentor

DjangoInstrumentor().instrument()
application = get_wsgi_application()  # a handler that loads the instrumentation's middleware
