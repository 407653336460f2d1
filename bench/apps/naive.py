"""Bench applications wrapped in OpenTelemetry's own middleware (the "naive" configuration, with ``naive_conf``).

``hello`` and ``recording`` are WSGI (opentelemetry-instrumentation-wsgi), ``asgi_hello`` and ``asgi_recording``
ASGI (opentelemetry-instrumentation-asgi). The middleware records http.server.duration (and active requests) per
request and starts a span through the API's tracer (a no-op: no TracerProvider is set).
"""

import hello
import recording
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as AsgiMiddleware
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiMiddleware

hello_app = WsgiMiddleware(hello.app)
recording_app = WsgiMiddleware(recording.app)
asgi_hello_app = AsgiMiddleware(hello.asgi_app)
asgi_recording_app = AsgiMiddleware(recording.asgi_app)
