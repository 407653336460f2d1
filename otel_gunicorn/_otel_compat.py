"""The one door to OpenTelemetry's private names: every ``_internal`` module, private constant or attribute the
package relies on is imported or read here, and nowhere else.

Why a door: the SDK and the Prometheus exporter promise nothing about these names, and a minor release may move any
of them. Kept in one module, each of them is pinned by ``tests/unit/test_otel_compat.py`` against the installed
packages, so an upgrade that moves one fails that test with the name of what moved, instead of failing somewhere in a
worker at run time. docs/architecture.md says how to move the version bounds in pyproject.toml.

Runs in every process (arbiter, workers, the exporter process). Imports nothing heavy at module level: the Prometheus
exporter's mapping and the OTLP log exporters are imported when first asked for (a worker never needs the former,
and grpc must never be loaded in the arbiter, which forks).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import context as _otel_context

# The logs API too: the global LoggerProvider (opentelemetry-instrument's, reused by the workers).
from opentelemetry._logs import get_logger_provider
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

# The API's synchronous gauge is still underscored (``Meter.create_gauge`` returns one).
from opentelemetry.metrics import _Gauge as APIGauge

# The SDK's default histogram boundaries and its per-instrument cardinality limit: ours must be the SDK's, not copies.
from opentelemetry.sdk.metrics._internal._view_instrument_match import (
    _DEFAULT_CARDINALITY_LIMIT as SDK_CARDINALITY_LIMIT,
)
from opentelemetry.sdk.metrics._internal.aggregation import (
    _DEFAULT_EXPLICIT_BUCKET_HISTOGRAM_AGGREGATION_BOUNDARIES as _SDK_DEFAULT_BOUNDARIES,
)

# What the SDK builds per measurement: used for its attribute cleaning, with its warnings.
from opentelemetry.sdk.metrics._internal.measurement import Measurement

# The context key under which the API keeps the current span.
from opentelemetry.trace.propagation import _SPAN_KEY as SPAN_KEY

#: the line the SDK's ``OTELResourceDetector`` logs for each pair of ``OTEL_RESOURCE_ATTRIBUTES`` that is not
#: ``key=value``, at every ``Resource.create`` (its logger: ``opentelemetry.sdk.resources``)
ENV_RESOURCE_WARNING = "Invalid key value resource attribute pair %s: %s"


class _EnvResourceWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != ENV_RESOURCE_WARNING


@contextlib.contextmanager
def env_resource_warnings_held_back() -> Iterator[None]:
    """While inside, the SDK's line about a malformed ``OTEL_RESOURCE_ATTRIBUTES`` pair is not logged.

    The arbiter reports the variable once per server (``_config``); the SDK would repeat it at every
    ``Resource.create`` in every process, importing its logs module included (a dataclass default runs one).
    """
    logger = logging.getLogger("opentelemetry.sdk.resources")
    held_back = _EnvResourceWarnings()
    logger.addFilter(held_back)
    try:
        yield
    finally:
        logger.removeFilter(held_back)


# The logs SDK is still experimental: public in the docs, private in its module name. Its import runs a
# Resource.create (ReadWriteLogRecord's default resource), in every process: not the place to report the variable.
with env_resource_warnings_held_back():
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, ReadableLogRecord
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        ConsoleLogRecordExporter,
        LogRecordExporter,
        LogRecordExportResult,
    )

__all__ = [
    "SDK_CARDINALITY_LIMIT",
    "SDK_DEFAULT_BOUNDARIES",
    "SPAN_KEY",
    "APIGauge",
    "BatchLogRecordProcessor",
    "ENV_RESOURCE_WARNING",
    "ConsoleLogRecordExporter",
    "LogRecordExporter",
    "LogRecordExportResult",
    "LoggerProvider",
    "LoggingHandler",
    "Measurement",
    "ReadableLogRecord",
    "advisory_boundaries",
    "context_reader",
    "env_resource_warnings_held_back",
    "get_logger_provider",
    "map_unit",
    "otlp_log_exporter_class",
    "reset_meter_provider",
    "sanitize_attribute",
    "sanitize_full_name",
]

SDK_DEFAULT_BOUNDARIES: tuple[float, ...] = tuple(_SDK_DEFAULT_BOUNDARIES)


def context_reader() -> Callable[[], Context]:
    """A reader of the current context: straight from its context variable when the runtime context is the API's
    default one (an exemplar filter asks on every measurement, and ``get_current`` is two calls deeper), else the
    API's ``get_current``."""
    runtime = getattr(_otel_context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if isinstance(runtime, ContextVarsRuntimeContext) and variable is not None:
        return variable.get  # type: ignore[no-any-return]
    return _otel_context.get_current


def advisory_boundaries(sdk_histogram: Any) -> Any:
    """The ``explicit_bucket_boundaries_advisory`` an SDK histogram was created with, as the SDK keeps it (already
    checked to be numbers), or None when it has none."""
    return getattr(getattr(sdk_histogram, "_advisory", None), "explicit_bucket_boundaries", None)


def sanitize_full_name(name: str) -> str:
    """The official OTel→Prometheus mapping of a metric name (the Prometheus exporter's own function)."""
    from opentelemetry.exporter.prometheus._mapping import sanitize_full_name as sanitize

    return sanitize(name)


def map_unit(unit: str) -> str:
    """The official OTel→Prometheus mapping of a UCUM unit to a name suffix ("" for none)."""
    from opentelemetry.exporter.prometheus._mapping import map_unit as mapped

    return mapped(unit)


def sanitize_attribute(key: str) -> str:
    """The official OTel→Prometheus mapping of an attribute key to a label name."""
    from opentelemetry.exporter.prometheus._mapping import sanitize_attribute as sanitize

    return sanitize(key)


def otlp_log_exporter_class(protocol: str) -> type[LogRecordExporter]:
    """The SDK's OTLP log record exporter class for ``protocol`` (``grpc`` or ``http/protobuf``); imported only now,
    since grpc must be loaded only in a process that will not fork again."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HTTPLogExporter

    return HTTPLogExporter


def reset_meter_provider() -> None:
    """Empty the API's set-once global MeterProvider slot, with a fresh proxy provider for the meters made next.

    What ``opentelemetry.test.globals_test.reset_metrics_globals`` (opentelemetry-test-utils) does. The fresh proxy
    provider matters: the old one already has the provider that was set as its real one and would keep handing out
    that provider's meters. Used under ``opentelemetry-instrument`` (:mod:`otel_gunicorn._arbiter.autoinstrument`).
    """
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
