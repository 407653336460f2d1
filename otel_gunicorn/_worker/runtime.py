"""The worker side of otel_gunicorn: a MeterProvider built after the fork that reports to the arbiter.

Runs in a worker only. Built in ``post_worker_init`` — after the fork, and after gevent has monkey-patched — and set
as the global provider, so the application's plain ``metrics.get_meter(...)`` works, including instruments created
in the arbiter before the fork under ``--preload`` (the API's proxies attach to this provider). Shut down in
``worker_exit`` so a graceful exit (TERM, HUP, max_requests) sends one final report.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import __version__
from otel_gunicorn._worker import link
from otel_gunicorn._worker.reporter import ChannelExporter

_log = logging.getLogger("otel_gunicorn")

#: seconds a graceful exit may spend on its final report
FINAL_REPORT_TIMEOUT = 2.0

_provider: MeterProvider | None = None


def start(worker: Any) -> MeterProvider | None:
    """Build this worker's MeterProvider and make it global; a no-op outside an otel_gunicorn worker."""
    global _provider
    arbiter = link.inherited()
    if arbiter is None or _provider is not None:
        return _provider
    interval = arbiter.config.metrics_interval
    exporter = ChannelExporter(arbiter.channel_path, send_timeout=min(interval, 1.0))
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=interval * 1000, export_timeout_millis=max(interval, 1.0) * 1000
    )
    # The arbiter exports under its own resource (one per server); a worker's resource never leaves the worker.
    provider = MeterProvider(metric_readers=[reader], resource=Resource.get_empty())
    metrics.set_meter_provider(provider)
    if metrics.get_meter_provider() is not provider:
        _log.warning(
            "otel_gunicorn: a global MeterProvider was set before the worker forked; metrics recorded through it "
            "cannot be merged. Let otel_gunicorn set the provider (do not call set_meter_provider in the app)."
        )
    _own_instruments(provider, exporter)
    _provider = provider
    return provider


def _own_instruments(provider: MeterProvider, exporter: ChannelExporter) -> None:
    meter = provider.get_meter("otel_gunicorn", __version__)

    def dropped(_options: CallbackOptions) -> list[Observation]:
        return [Observation(exporter.dropped)]

    meter.create_observable_counter(
        "otel_gunicorn.worker.reports.dropped",
        [dropped],
        unit="{report}",
        description="Worker reports dropped because the arbiter could not be reached in time (the next repairs it).",
    )


def shutdown() -> None:
    """Send the final report and stop reporting (graceful worker exit)."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return
    try:
        provider.shutdown(timeout_millis=FINAL_REPORT_TIMEOUT * 1000)
    except Exception:  # noqa: BLE001 - telemetry must never break a worker's exit
        _log.warning("otel_gunicorn: final report of worker %d failed", os.getpid(), exc_info=True)
