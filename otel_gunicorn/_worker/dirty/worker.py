"""The dirty worker's telemetry: a MeterProvider built after the dirty fork that reports to the arbiter, the call
metrics, and a final report when the dirty worker stops.

Runs in a dirty worker (gunicorn >= 25), forked by the dirty arbiter. :func:`start` runs in ``dirty_worker_init``:
after the fork, after the dirty apps were loaded and initialised (instruments they created already, through the
OpenTelemetry API's proxies, attach to this provider once it is the global one) and just before the worker serves.
It reports to the arbiter's channel at the path the arbiter reserved for the dirty side
(:func:`otel_gunicorn._handoff.dirty_link`), cumulative snapshots exactly as an HTTP worker sends.

The first report goes out at once, not an interval later: the arbiter then knows the worker from its boot, and a
dirty worker that stops before its first interval is not refused at its final report — the channel checks a peer's
parent in ``/proc`` when it accepts the connection, and the dirty arbiter reaps its workers at once, so a connection
first made on the way out may be looked at after the process is gone. Where the channel is not bound yet (a dirty
worker can boot before the arbiter's ``when_ready``), the first report is tried again each second for a few seconds.

No hook runs in a dirty worker when it stops: gunicorn calls ``dirty_worker_exit`` in the dirty arbiter, after the
worker is gone. So :func:`start` wraps the worker's ``run()``, which returns when the worker stops gracefully (TERM,
QUIT, INT, or gunicorn's abort SIGABRT), before gunicorn ends the process with ``os._exit``; the final report and the
goodbye are sent right after it. The goodbye says ``timeout`` when the worker got SIGABRT: the dirty arbiter sends it
only to a worker that missed its heartbeat, and only the worker sees it.

Hazards: ``run`` and ``execute`` are replaced on gunicorn's worker object, and the SIGABRT handler gunicorn installed
is chained, not replaced; where one of them is missing (another gunicorn version), that part is left out and logged.
SIGKILL or a crash loses what happened since the last report, as for an HTTP worker. A dirty worker whose dirty
arbiter died lives on as an orphan (gunicorn 27 does not stop it); the arbiter would refuse its reports, so it stops
sending them (:class:`DirtyChannelExporter`).
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData

from otel_gunicorn import _handoff
from otel_gunicorn._worker.dirty.calls import CallMetrics
from otel_gunicorn._worker.process_state import WORKER
from otel_gunicorn._worker.reporter import ChannelExporter, reporting_meter

_log = logging.getLogger("otel_gunicorn")

#: seconds a graceful exit may spend on its final report
FINAL_REPORT_TIMEOUT = 2.0
#: attempts, a second apart, at the first report while the arbiter's channel is not bound yet
FIRST_REPORT_ATTEMPTS = 5


class DirtyChannelExporter(ChannelExporter):
    """The channel exporter of a dirty worker, silent once the dirty arbiter that forked it is gone."""

    def __init__(self, path: str, send_timeout: float) -> None:
        super().__init__(path, send_timeout)
        self._self = os.getpid()
        self._parent = os.getppid()
        self.orphaned = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        # (a process the dirty app forked has another parent too: the base class refuses it, quietly)
        if os.getpid() == self._self and os.getppid() != self._parent:
            if not self.orphaned:
                self.orphaned = True
                _log.warning("otel_gunicorn: dirty worker %d lost its dirty arbiter and stops reporting", os.getpid())
            return MetricExportResult.FAILURE
        return super().export(metrics_data, timeout_millis, **kwargs)


class DirtyWorkerRuntime:
    """One dirty worker's metrics, reported to the arbiter."""

    def __init__(self, link: _handoff.ArbiterLink, timeout_error: type[BaseException] | None) -> None:
        assert link.channel_path is not None
        interval = link.config.metrics_interval
        exporter = self.exporter = DirtyChannelExporter(link.channel_path, send_timeout=min(interval, 1.0))
        self.provider, meter = reporting_meter(exporter, interval, "dirty worker")
        self.calls = CallMetrics(meter, timeout_error)

        #: set by the SIGABRT handler: the dirty arbiter aborted this worker for a missed heartbeat
        self.aborted = False
        self._path = link.channel_path

    def first_report(self, attempts: int = FIRST_REPORT_ATTEMPTS) -> None:
        """Report now if the channel is bound, else try again in a second (``attempts`` times in all)."""
        if os.path.exists(self._path):
            try:
                self.provider.force_flush(timeout_millis=FINAL_REPORT_TIMEOUT * 1000)
            except Exception:  # noqa: BLE001 - the periodic reports follow anyway
                _log.debug("otel_gunicorn: the first report of dirty worker %d failed", os.getpid(), exc_info=True)
        elif attempts > 1:
            timer = threading.Timer(1.0, self.first_report, (attempts - 1,))
            timer.daemon = True
            timer.start()

    def shutdown(self, reason: str) -> None:
        """Send the final report, then the goodbye (``timeout`` if aborted, else ``reason``)."""
        try:
            self.provider.shutdown(timeout_millis=FINAL_REPORT_TIMEOUT * 1000)
        except Exception:  # noqa: BLE001 - telemetry must never break a worker's exit
            _log.warning("otel_gunicorn: the final report of dirty worker %d failed", os.getpid(), exc_info=True)
        self.exporter.goodbye("timeout" if self.aborted else reason)


def start(worker: Any) -> DirtyWorkerRuntime | None:
    """``dirty_worker_init``: build this dirty worker's runtime and measure its calls; a no-op unless the arbiter
    reserved a channel for the dirty side."""
    link = _handoff.dirty_link()
    if link is None or link.channel_path is None or WORKER.dirty_runtime is not None:
        known = WORKER.dirty_runtime
        return known if isinstance(known, DirtyWorkerRuntime) else None
    try:
        runtime = DirtyWorkerRuntime(link, _timeout_error())
        _instrument(worker, runtime)
        runtime.first_report()
    except Exception:  # noqa: BLE001 - a dirty worker that cannot build its telemetry must still serve
        _log.exception("otel_gunicorn: dirty worker %d could not start its telemetry; it serves without", os.getpid())
        return None
    WORKER.dirty_runtime = runtime
    return runtime


def _timeout_error() -> type[BaseException] | None:
    # Imported here, in the dirty worker: gunicorn imports gunicorn.dirty (and asyncio) lazily, for gevent's sake.
    try:
        from gunicorn.dirty.errors import DirtyTimeoutError
    except ImportError:
        return None
    error: type[BaseException] = DirtyTimeoutError  # gunicorn ships no type information
    return error


def _instrument(worker: Any, runtime: DirtyWorkerRuntime) -> None:
    """Measure calls around ``worker.execute``, report after ``worker.run``, and note an abort."""
    execute = getattr(worker, "execute", None)
    if inspect.iscoroutinefunction(execute):
        worker.execute = runtime.calls.wrap(execute)
    else:
        _log.warning("otel_gunicorn: this gunicorn's dirty worker has no execute coroutine: no dirty call metrics")
    run = getattr(worker, "run", None)
    if callable(run):
        worker.run = _reporting_after(run, runtime)
    else:
        _log.warning("otel_gunicorn: this gunicorn's dirty worker has no run(): no final report when it stops")
    previous = signal.getsignal(signal.SIGABRT)
    if callable(previous):  # gunicorn's handler stops the worker gracefully; anything else is left alone
        signal.signal(signal.SIGABRT, _noting_abort(previous, runtime))


def _reporting_after(run: Callable[[], Any], runtime: DirtyWorkerRuntime) -> Callable[[], None]:
    def run_then_report() -> None:
        try:
            run()
        except BaseException:
            runtime.shutdown("error")
            raise
        runtime.shutdown("normal")

    return run_then_report


def _noting_abort(
    previous: Callable[[int, FrameType | None], Any], runtime: DirtyWorkerRuntime
) -> Callable[[int, FrameType | None], None]:
    def on_abort(signum: int, frame: FrameType | None) -> None:
        runtime.aborted = True
        previous(signum, frame)

    return on_abort
