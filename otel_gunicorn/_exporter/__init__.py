"""The OTLP exporter process: a child of the arbiter that pushes the merged metrics to a collector.

A process of its own because grpc and fork do not mix (FACTS.md): the arbiter forks workers all its life, so it must
never hold a grpc channel. This process never forks; it gets the arbiter's merged snapshots on its stdin in the
channel's wire format and exports each with the OpenTelemetry SDK's OTLP exporter (``http/protobuf`` or ``grpc``).
"""
