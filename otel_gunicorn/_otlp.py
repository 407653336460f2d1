"""OTLP exporters of the OpenTelemetry SDK, chosen by protocol: ``http/protobuf`` or ``grpc``.

Endpoint, headers, timeout, compression and certificates are left to the exporters, which read the standard
``OTEL_EXPORTER_OTLP_*`` variables themselves. Imported lazily: grpc is heavy, and must only ever be loaded in a
process that will not fork afterwards (a worker, or the arbiter's exporter process — never the arbiter itself).
"""

from __future__ import annotations

from typing import Any


def span_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPSpanExporter()


def log_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # type: ignore[assignment]
    return OTLPLogExporter()


def metric_exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
    return OTLPMetricExporter()
