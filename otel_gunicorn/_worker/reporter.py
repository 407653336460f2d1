"""The worker's end of the channel: an SDK ``MetricExporter`` that sends cumulative snapshots to the arbiter.

Runs in a worker, on the SDK's ``PeriodicExportingMetricReader`` thread, never on a request thread. Every report is
the worker's complete cumulative state, so a report that cannot be sent promptly is simply dropped and counted: the
next one carries everything. A send that times out mid-frame leaves the stream unusable, so the connection is closed
and re-opened on the next report.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.environment_variables import OTEL_METRICS_EXEMPLAR_FILTER
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    Counter,
    ExemplarFilter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    TraceBasedExemplarFilter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _config
from otel_gunicorn import _instruments as inst
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import Snapshot, attach_exemplars, payload_from_metrics_data, payload_from_snapshot
from otel_gunicorn._version import __version__
from otel_gunicorn._wire import FrameKind, encode_frame
from otel_gunicorn._worker.app_meter import AppMeterProvider

_log = logging.getLogger("otel_gunicorn")

_CUMULATIVE: dict[type, AggregationTemporality] = {
    kind: AggregationTemporality.CUMULATIVE
    for kind in (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
}


class ChannelExporter(MetricExporter):
    """Sends each collection to the arbiter over its unix socket.

    Args:
        path: the arbiter's channel socket.
        send_timeout: seconds one report may take to send before it is dropped.
        extra: more cumulative points to send with each report (otel_gunicorn's request metrics).
    """

    def __init__(self, path: str, send_timeout: float, extra: Callable[[], Snapshot] | None = None) -> None:
        super().__init__(preferred_temporality=_CUMULATIVE)
        #: snapshots of metrics aggregated outside the SDK, sent with each report (see :meth:`add_source`)
        self._sources: list[Callable[[], Snapshot]] = [extra] if extra is not None else []
        #: what runs at each report before it is built (see :meth:`add_tick`)
        self._ticks: list[Callable[[], None]] = []
        self._path = path
        self._send_timeout = send_timeout
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._errors = RateLimitedLogger(_log)
        #: reports dropped (arbiter unreachable or too slow): exported as otel_gunicorn.worker.reports.dropped
        self.dropped = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if os.getpid() != self._pid:
            # A process forked by the application inherited this exporter: its copy of the worker's counters must
            # not be reported as if it were the worker.
            return MetricExportResult.FAILURE
        for tick in self._ticks:  # the slow-request check rides on the report's thread and schedule
            tick()
        payload = payload_from_metrics_data(metrics_data)
        for source in self._sources:  # metrics aggregated outside the SDK (request metrics, the app's instruments)
            payload["metrics"] += payload_from_snapshot(source())["metrics"]
        frame = encode_frame(FrameKind.SNAPSHOT, payload)
        try:
            sock = self._connect()
            sock.sendall(frame)
        except OSError as exc:
            self.dropped += 1
            self._close()
            self._errors.log(
                logging.WARNING, "send", "otel_gunicorn: worker %d could not report to the arbiter: %s", self._pid, exc
            )
            return MetricExportResult.FAILURE
        self._errors.reset("send")
        return MetricExportResult.SUCCESS

    def add_source(self, snapshot: Callable[[], Snapshot]) -> None:
        """Send ``snapshot()``'s cumulative points with every report from now on (called on the reporting thread)."""
        self._sources.append(snapshot)

    def add_tick(self, tick: Callable[[], None]) -> None:
        """Run ``tick()`` at each report, on the reporting thread, before the report is built; it must not raise
        (the slow-request check, :meth:`RequestWatch.tick`)."""
        self._ticks.append(tick)

    def goodbye(self, reason: str) -> None:
        """Tell the arbiter how this worker is exiting (``normal`` or ``error``); best effort."""
        if os.getpid() != self._pid:
            return
        try:
            self._connect().sendall(encode_frame(FrameKind.GOODBYE, {"exit": reason}))
        except OSError:
            pass  # the arbiter will count the exit as "killed": the best it can know
        self._close()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Called by the SDK after the final report; the connection stays open for :meth:`goodbye`."""

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._send_timeout)
            try:
                sock.connect(self._path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def reporting_meter(exporter: ChannelExporter, interval: float, who: str) -> tuple[AppMeterProvider, Meter]:
    """The global MeterProvider of a worker (HTTP or dirty) reporting through ``exporter`` every ``interval`` seconds,
    and otel_gunicorn's own meter on it, already counting the reports ``exporter`` drops.

    The application's synchronous instruments made on it are otel_gunicorn's fast ones
    (:mod:`otel_gunicorn._worker.app_instruments`), whose points ``exporter`` sends with each report.

    Call after the fork: the provider's reader thread belongs to this process only.
    """
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=interval * 1000, export_timeout_millis=max(interval, 1.0) * 1000
    )
    # The arbiter exports under its own resource (one per server); a worker's resource never leaves the worker.
    provider = AppMeterProvider(
        metric_readers=[reader], resource=Resource.get_empty(), exemplar_filter=exemplar_filter(os.environ)
    )
    app = provider.app_instruments
    exporter.add_source(lambda: attach_exemplars(app.snapshot(), app.exemplars()))
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:
        _log.warning(
            "otel_gunicorn: a global MeterProvider was set before the %s started reporting; metrics recorded through "
            "it cannot be merged. Let otel_gunicorn set the provider (do not call set_meter_provider in the app).",
            who,
        )
    meter = provider.get_meter(inst.SCOPE_NAME, __version__)

    def dropped(_options: CallbackOptions) -> list[Observation]:
        return [Observation(exporter.dropped)]

    meter.create_observable_counter(
        inst.REPORTS_DROPPED.name,
        [dropped],
        unit=inst.REPORTS_DROPPED.unit,
        description=inst.REPORTS_DROPPED.description,
    )
    return provider, meter


#: ``OTEL_METRICS_EXEMPLAR_FILTER``'s values (the specification's, as the arbiter's configuration reads them)
EXEMPLAR_FILTERS: dict[str, type[ExemplarFilter]] = dict(
    zip(_config.EXEMPLAR_FILTERS, (TraceBasedExemplarFilter, AlwaysOnExemplarFilter, AlwaysOffExemplarFilter))
)
#: the specification's default, and the SDK's
DEFAULT_EXEMPLAR_FILTER = _config.EXEMPLAR_FILTERS[0]


def exemplar_filter(environ: Mapping[str, str]) -> ExemplarFilter:
    """The exemplar filter ``OTEL_METRICS_EXEMPLAR_FILTER`` names (``trace_based`` unless set).

    Which measurements of the application's own synchronous instruments are offered to the exemplar reservoirs.
    ``trace_based`` offers those made inside a sampled span; with no span current it costs one context lookup per
    measurement, while ``always_off`` skips even that (bench/request_path_inprocess.py has the figures). The SDK
    reads the same variable, but an unknown value makes it raise, which would leave the worker without metrics:
    here the value is matched regardless of case, as the specification's enumerations are, and an unknown one is
    replaced by the default — the arbiter has already said so, once, when it read its configuration.
    """
    value = environ.get(OTEL_METRICS_EXEMPLAR_FILTER, "").strip().lower()
    return EXEMPLAR_FILTERS.get(value, EXEMPLAR_FILTERS[DEFAULT_EXEMPLAR_FILTER])()
