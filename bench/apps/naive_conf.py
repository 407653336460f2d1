"""gunicorn configuration of the "naive" approach: the OpenTelemetry SDK set up in every worker in ``post_fork``.

Each worker builds its own MeterProvider with a PeriodicExportingMetricReader pushing OTLP (http/protobuf) to the
collector named by the standard ``OTEL_EXPORTER_OTLP_*`` variables, every ``OTEL_METRIC_EXPORT_INTERVAL``
milliseconds. The application is wrapped in opentelemetry-instrumentation's OpenTelemetryMiddleware (``naive.py``).
"""

from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader


def post_fork(server, worker):
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def worker_exit(server, worker):
    provider = metrics.get_meter_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown(timeout_millis=1000)
