"""The OTLP exporter process: a child of the arbiter that pushes the merged metrics to a collector.

A process of its own because grpc and fork do not mix (a grpc channel created before a fork is unusable, and may
hang, in the child; ``docs/failure-modes.md``): the arbiter forks workers all its life, so it must never hold one.
This process never forks; it gets the arbiter's merged snapshots on its stdin in the channel's wire format and
exports each with the OpenTelemetry SDK's OTLP exporter (``http/protobuf`` or ``grpc``).
"""
