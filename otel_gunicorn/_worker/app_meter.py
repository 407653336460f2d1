"""The worker's MeterProvider and meters: the SDK's, with the application's synchronous instruments made fast.

Runs in a worker (HTTP or dirty), built after the fork. Every meter the application gets (``metrics.get_meter``, the
API's proxies included once this provider is the global one) is an :class:`AppMeter`: the SDK makes each instrument
(validation, duplicate warnings, the advisory's parsing, one instrument per identity), and the synchronous ones are
then handed to :mod:`otel_gunicorn._worker.app_instruments`' fast aggregations; observable instruments stay the SDK's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.metrics import CallbackT, NoOpMeter, ObservableCounter, ObservableGauge, ObservableUpDownCounter
from opentelemetry.metrics import Counter as APICounter
from opentelemetry.metrics import Histogram as APIHistogram
from opentelemetry.metrics import Meter as APIMeter
from opentelemetry.metrics import UpDownCounter as APIUpDownCounter
from opentelemetry.sdk.metrics import ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import Attributes

from otel_gunicorn._otel_compat import APIGauge, advisory_boundaries
from otel_gunicorn._worker.app_instruments import (
    DEFAULT_BOUNDARIES,
    AppInstruments,
    FastCounter,
    FastGauge,
    FastHistogram,
    FastUpDownCounter,
)


class AppMeter(APIMeter):
    """An SDK meter whose synchronous instruments are :class:`AppInstruments`' fast ones; the rest is the SDK's."""

    def __init__(self, sdk: Any, registry: AppInstruments) -> None:
        super().__init__(sdk.name, sdk.version, sdk.schema_url)
        self._sdk = sdk
        self._registry = registry

    def create_counter(self, name: str, unit: str = "", description: str = "") -> APICounter:
        sdk = self._sdk.create_counter(name, unit, description)
        return self._registry.fast(sdk, lambda: FastCounter(sdk, self._registry))  # type: ignore[return-value]

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> APIUpDownCounter:
        sdk = self._sdk.create_up_down_counter(name, unit, description)
        return self._registry.fast(sdk, lambda: FastUpDownCounter(sdk, self._registry))  # type: ignore[return-value]

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> APIHistogram:
        sdk = self._sdk.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory
        )
        boundaries = _boundaries(sdk)
        if boundaries is None:
            return sdk  # type: ignore[no-any-return]  # the SDK raises on every record(): left to it, unchanged
        return self._registry.fast(sdk, lambda: FastHistogram(sdk, self._registry, boundaries))  # type: ignore[return-value]

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> APIGauge:
        sdk = self._sdk.create_gauge(name, unit, description)
        return self._registry.fast(sdk, lambda: FastGauge(sdk, self._registry))  # type: ignore[return-value]

    def create_observable_counter(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableCounter:
        return self._sdk.create_observable_counter(name, callbacks, unit, description)  # type: ignore[no-any-return]

    def create_observable_up_down_counter(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableUpDownCounter:
        return self._sdk.create_observable_up_down_counter(  # type: ignore[no-any-return]
            name, callbacks, unit, description
        )

    def create_observable_gauge(
        self, name: str, callbacks: Sequence[CallbackT] | None = None, unit: str = "", description: str = ""
    ) -> ObservableGauge:
        return self._sdk.create_observable_gauge(name, callbacks, unit, description)  # type: ignore[no-any-return]


def _boundaries(sdk: Any) -> tuple[float, ...] | None:
    """The histogram's bucket boundaries as the SDK would use them: the advisory's (already checked to be numbers
    by the SDK meter) or the default; None for ones the SDK refuses (not finite, not strictly increasing)."""
    advisory = advisory_boundaries(sdk)
    if advisory is None:
        return DEFAULT_BOUNDARIES
    boundaries = tuple(advisory)
    if not all(math.isfinite(b) for b in boundaries) or any(a >= b for a, b in zip(boundaries, boundaries[1:])):
        return None
    return boundaries


class AppMeterProvider(MeterProvider):
    """The worker's MeterProvider: the SDK's, with the application's synchronous instruments made fast.

    A meter the SDK would not give (``OTEL_SDK_DISABLED``, after shutdown, no name) is the SDK's no-op meter, as
    before. :attr:`app_instruments` reports what the fast instruments aggregated.
    """

    def __init__(
        self, metric_readers: Sequence[MetricReader], resource: Resource, exemplar_filter: ExemplarFilter
    ) -> None:
        super().__init__(metric_readers=metric_readers, resource=resource, exemplar_filter=exemplar_filter)
        self.app_instruments = AppInstruments(exemplar_filter)
        self._app_meters: dict[int, tuple[APIMeter, AppMeter]] = {}
        self._app_meters_lock = threading.Lock()

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> APIMeter:
        meter = super().get_meter(name, version, schema_url, attributes)
        if isinstance(meter, NoOpMeter):
            return meter
        with self._app_meters_lock:
            known = self._app_meters.get(id(meter))
            if known is None:  # the SDK meter is kept alongside, so its id cannot be reused
                known = self._app_meters[id(meter)] = (meter, AppMeter(meter, self.app_instruments))
            return known[1]
