"""The worker side of otel_gunicorn: a MeterProvider built after the fork that reports to the arbiter.

Runs in a worker only. Built in ``post_worker_init`` — after the fork, and after gevent has monkey-patched — and set
as the global provider, so the application's plain ``metrics.get_meter(...)`` works, including instruments created
in the arbiter before the fork under ``--preload`` (the API's proxies attach to this provider). Shut down in
``worker_exit`` so a graceful exit (TERM, HUP, max_requests) sends one final report, flushes its spans and log
records, and says goodbye with how the worker ended — all within ``OTEL_GUNICORN_SHUTDOWN_TIMEOUT``, so an
unreachable collector cannot hold the exit up.

Requests are measured through gunicorn's ``pre_request``/``post_request`` hooks where the worker class calls them,
and otherwise by wrapping the loaded application here, in ``post_worker_init`` — after ``load_wsgi()``, before
``run()`` reads ``worker.wsgi`` (:mod:`otel_gunicorn._worker.app_boundary`). Never both for one worker class.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import PROCESS_PID, Resource

from otel_gunicorn import _environment as env
from otel_gunicorn import _handoff
from otel_gunicorn._worker import app_boundary, routes, server_gauges
from otel_gunicorn._worker.gc_stats import GcStats
from otel_gunicorn._worker.log_export import build_log_export
from otel_gunicorn._worker.process_state import WORKER
from otel_gunicorn._worker.reporter import ChannelExporter, reporting_meter
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.request_watch import RequestWatch, Ticker
from otel_gunicorn._worker.requests import RequestObserver
from otel_gunicorn._worker.state import WorkerStateReader, state_reader
from otel_gunicorn._worker.tracing import RequestTracing, app_makes_server_spans, build_tracer_provider

_log = logging.getLogger("otel_gunicorn")


class WorkerRuntime:
    """This worker's telemetry: metrics reported to the arbiter (unless metrics are off), spans, log export."""

    def __init__(self, worker: Any, arbiter: _handoff.ArbiterLink) -> None:
        # Not Resource.create: the arbiter already detected the resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
        # whose malformed entries the SDK reports on every detection: once per server, not once per worker).
        resource = Resource(dict(arbiter.resource_attributes, **{PROCESS_PID: os.getpid()}))
        self.exit_timeout = arbiter.config.worker_exit_timeout
        self.tracer_provider = build_tracer_provider(arbiter.config, resource)
        self.log_export = build_log_export(arbiter.config, resource)
        state = state_reader(worker)
        self.provider: MeterProvider | None = None
        self.exporter: ChannelExporter | None = None
        self.request_stats: RequestStats | None = None
        self.gc_stats: GcStats | None = None
        #: the slow-request check's own thread, where no report runs it (metrics off)
        self.ticker: Ticker | None = None
        if arbiter.channel_path is not None:  # None: OTEL_METRICS_EXPORTER=none, spans and logs only
            self._start_metrics(worker, arbiter, state)
        # The application loaded (worker.wsgi; gunicorn's asgi worker keeps it in worker.asgi): one that makes its
        # own server spans gets none of ours (FastAPI).
        app = getattr(worker, "asgi", None) or getattr(worker, "wsgi", None)
        spans = None if app_makes_server_spans(app) else self.tracer_provider
        observer = RequestObserver(
            self.request_stats,
            _handoff.slot_of(worker),
            RequestTracing(spans),
            routes.RouteBound(arbiter.config.max_routes),
        )
        observer.serving = state.serving()
        _route_sources(worker, observer, state)
        self.watch = self._watch(worker, arbiter, observer)
        # Never both for one request: the hooks feed the observer only where gunicorn calls them; elsewhere the
        # application is wrapped and the hook functions below find no observer.
        self.requests = observer if state.requests_via_hooks else None
        if not state.requests_via_hooks:
            _wrap_application(worker, observer, state)

    def _start_metrics(self, worker: Any, arbiter: _handoff.ArbiterLink, state: WorkerStateReader) -> None:
        assert arbiter.channel_path is not None
        interval = arbiter.config.metrics_interval
        self.request_stats = RequestStats(exemplar_filter=arbiter.config.exemplar_filter)
        exporter = self.exporter = ChannelExporter(
            arbiter.channel_path, send_timeout=min(interval, 1.0), extra=self.request_stats.snapshot
        )
        self.provider, meter = reporting_meter(exporter, interval, "worker")
        server_gauges.register(meter, state, self.request_stats)
        gc_stats = GcStats(_handoff.slot_of(worker))
        if gc_stats.install():  # the garbage collector from now on: reported with each report
            self.gc_stats = gc_stats
            exporter.add_source(gc_stats.snapshot)
        if WORKER.own_listeners:
            server_gauges.register_own_listeners(meter, worker)

    def _watch(self, worker: Any, arbiter: _handoff.ArbiterLink, observer: RequestObserver) -> RequestWatch:
        """The stack lines of slow and stuck requests, checked at each report (or, with metrics off, as often on a
        thread of their own), and told when SIGTERM starts the graceful stop."""
        cfg = getattr(worker, "cfg", None)
        if arbiter.config.slow_request_seconds is not None and self.request_stats is not None:
            self.request_stats.slow_after = arbiter.config.slow_request_seconds  # gunicorn.requests.slow, at each end
        graceful = getattr(cfg, "graceful_timeout", None)
        watch = RequestWatch(
            observer,
            slow_after=arbiter.config.slow_request_seconds,
            graceful_timeout=float(graceful) if isinstance(graceful, (int, float)) else None,
            tick_interval=arbiter.config.metrics_interval,
            main_thread=threading.get_ident(),  # post_worker_init runs on the worker's main thread
        )
        if self.exporter is not None:
            self.exporter.add_tick(watch.tick)
        else:
            self.ticker = Ticker(watch.tick, arbiter.config.metrics_interval)
        note_stops(watch)
        return watch

    def shutdown(self, reason: str) -> None:
        """Send the final report, flush spans and log records, then say goodbye; stop trying at the deadline."""
        if self.ticker is not None:
            self.ticker.stop()
        deadline = time.monotonic() + self.exit_timeout
        # The final report first: it goes to the arbiter over a local socket, so it is quick, and it keeps the
        # merged totals exact; spans and log records go to a collector that may not answer at all.
        provider = self.provider
        if provider is not None:
            _quietly(lambda: provider.shutdown(timeout_millis=_left(deadline) * 1000))
        flushes = {"spans": self.tracer_provider, "log records": self.log_export}
        late = _all_within({what: p.shutdown for what, p in flushes.items() if p is not None}, deadline)
        if late:
            _log.warning(
                "otel_gunicorn: worker %d gave up on its %s after %g s (its share of %s): those not yet exported "
                "are lost",
                os.getpid(),
                " and ".join(late),
                self.exit_timeout,
                env.OTEL_GUNICORN_SHUTDOWN_TIMEOUT,
            )
        if self.exporter is not None:
            self.exporter.goodbye(reason)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _quietly(flush: Callable[[], object]) -> None:
    try:
        flush()
    except Exception:  # noqa: BLE001 - telemetry must never break a worker's exit
        _log.warning("otel_gunicorn: flushing telemetry of worker %d failed", os.getpid(), exc_info=True)


def _all_within(flushes: dict[str, Callable[[], object]], deadline: float) -> list[str]:
    """Run ``flushes`` side by side; return the names of those still running at ``deadline``.

    The SDK cannot bound them itself: a provider's shutdown takes no timeout (its batch processor waits up to
    30 s), its OTLP exporters retry with backoff for up to ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s by default) whatever
    timeout ``export`` is given, and a collector that accepts connections but never answers holds a request for as
    long. So each runs on a daemon thread, and one still running at the deadline is abandoned: the process exits
    without it.
    """
    threads = {
        what: threading.Thread(target=_quietly, args=(flush,), name=f"otel-gunicorn-flush-{what}", daemon=True)
        for what, flush in flushes.items()
    }
    for thread in threads.values():
        thread.start()
    for thread in threads.values():
        thread.join(_left(deadline))
    return [what for what, thread in threads.items() if thread.is_alive()]


def _route_sources(worker: Any, observer: RequestObserver, state: WorkerStateReader) -> None:
    """Where the application needs help to tell its route: Flask and Django (WSGI or ASGI) leave it in the environ
    or the scope; gunicorn's asgi worker gets the scope's route captured for ``post_request``."""
    try:
        # gunicorn's asgi worker serves worker.asgi (set in load_wsgi, before post_worker_init); the others wsgi
        name = "asgi" if getattr(worker, "asgi", None) is not None else "wsgi"
        app = getattr(worker, name, None)
        routes.install(app)
        if app is not None and state.requests_via_hooks and state.asgi_via_hooks:
            setattr(worker, name, routes.ASGIRouteCapture(app))
            observer.captured_routes = True
    except Exception:  # noqa: BLE001 - a worker that cannot read routes must still serve: requests without route
        _log.warning("otel_gunicorn: worker %d cannot read its application's routes", os.getpid(), exc_info=True)


def _wrap_application(worker: Any, observer: RequestObserver, state: WorkerStateReader) -> None:
    """Measure requests around ``worker.wsgi`` for a worker class that calls no request hooks."""
    try:
        if app_boundary.install(worker, observer, state.app_interface()):
            return
        _log.warning(
            "otel_gunicorn: worker %d (%s) calls no request hooks and its application (%s) cannot be wrapped: "
            "no request metrics or spans",
            os.getpid(),
            type(worker).__name__,
            type(getattr(worker, "wsgi", None)).__name__,
        )
    except Exception:  # noqa: BLE001 - a worker that cannot wrap its application must still serve it
        _log.warning("otel_gunicorn: worker %d could not wrap its application", os.getpid(), exc_info=True)


def start(worker: Any) -> WorkerRuntime | None:
    """Build this worker's runtime; a no-op outside a worker forked by a running otel_gunicorn arbiter."""
    arbiter = _handoff.inherited()
    if arbiter is None or WORKER.runtime is not None:
        return current()
    try:
        runtime = WORKER.runtime = WorkerRuntime(worker, arbiter)
    except Exception:  # noqa: BLE001 - a worker that cannot build its telemetry must still serve
        _log.exception("otel_gunicorn: worker %d could not start its telemetry; it serves without", os.getpid())
        return None
    if runtime.requests is not None:
        WORKER.request_started = runtime.requests.started
        WORKER.request_finished = runtime.requests.finished
    _pin_request_hooks(worker)
    return runtime


def current() -> WorkerRuntime | None:
    """This worker's runtime, if it has one."""
    runtime = WORKER.runtime
    return runtime if isinstance(runtime, WorkerRuntime) else None


def _pin_request_hooks(worker: Any) -> None:
    """Set the worker's ``pre_request`` and ``post_request`` hooks as plain attributes of its configuration.

    gunicorn reads both on every request as ``cfg.pre_request``, which Python resolves through
    ``Config.__getattr__`` only after its normal lookup failed and built an ``AttributeError``: ~6.7 k instructions
    each (bench/README.md), more than the rest of our per-request work. A worker's configuration no longer changes
    once it serves (a HUP forks new workers with a new one), so the hooks it holds now — ours, or the user's with
    ours chained behind — are set where the normal lookup finds them first. ``Config.__setattr__`` refuses setting
    names, hence ``object.__setattr__``.
    """
    cfg = getattr(worker, "cfg", None)
    settings = getattr(cfg, "settings", None)
    if not isinstance(settings, dict):
        return
    for name in ("pre_request", "post_request"):
        setting = settings.get(name)
        if setting is not None:
            try:
                object.__setattr__(cfg, name, setting.get())
            except (AttributeError, TypeError):  # a configuration object that does not take attributes: unpinned
                pass


def forked(server: Any, worker: Any) -> None:
    """Right after the fork: log records carry the worker's ``gunicorn.worker.slot`` from now on, and we note
    whether the worker listens on sockets of its own (``reuse_port`` on gunicorn >= 24 binds them in the child;
    before that, and without reuse_port, the sockets are the arbiter's, which measures them itself)."""
    _handoff.set_worker_slot(_handoff.slot_of(worker))
    inherited = {id(listener) for listener in getattr(server, "LISTENERS", None) or []}
    sockets = getattr(worker, "sockets", None) or []
    WORKER.own_listeners = bool(sockets) and not any(id(listener) in inherited for listener in sockets)


def aborting(worker: Any) -> None:
    """``worker_abort`` (the arbiter's SIGABRT for a missed ``--timeout``): each request in flight gets its line
    with its stack, and those cut off are recorded as timeouts."""
    runtime = current()
    if runtime is None:
        return
    timeout = getattr(getattr(worker, "cfg", None), "timeout", None)
    runtime.watch.timed_out(float(timeout) if isinstance(timeout, (int, float)) else None)
    if runtime.requests is not None:
        runtime.requests.abort()


def note_stops(watch: RequestWatch) -> None:
    """Tell ``watch`` when SIGTERM (gunicorn's graceful stop) arrives: the handler gunicorn installed for it (its
    worker's ``handle_exit``, or asyncio's for the asgi worker, whose loop reads the signal from its wakeup fd
    either way) is wrapped, on the main thread in ``post_worker_init``. A handler that is not Python's (the
    default, or ignored) is left alone: the graceful-stop lines are then absent."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return

    def stopping(signum: int, frame: Any) -> None:
        watch.stopping()
        previous(signum, frame)

    try:
        signal.signal(signal.SIGTERM, stopping)
        signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: SIGTERM must not interrupt a request's I/O
    except (ValueError, OSError):  # not the main thread, or no such signal here
        _log.debug("otel_gunicorn: cannot watch for SIGTERM in worker %d", os.getpid(), exc_info=True)


def _abandon_requests(runtime: WorkerRuntime) -> None:
    """Before the final report: requests an abort cut off on other threads never reach ``post_request``."""
    if runtime.requests is not None:
        try:
            runtime.requests.abandon_in_flight()
        except Exception:  # noqa: BLE001 - telemetry must never break a worker's exit
            _log.debug("otel_gunicorn: recording abandoned requests failed", exc_info=True)


def exit_reason() -> str:
    """How the worker is leaving, judged inside ``worker_exit`` (which gunicorn calls from a ``finally``)."""
    exc = sys.exc_info()[1]
    if exc is None or isinstance(exc, SystemExit) and exc.code in (0, None):
        return "normal"
    return "error"


def shutdown() -> None:
    """Graceful worker exit: final report and goodbye."""
    runtime, WORKER.runtime = current(), None
    if runtime is not None:
        _abandon_requests(runtime)
        runtime.shutdown(exit_reason())
        # The interpreter's exit ends with a full garbage collection over every object the worker holds, which the
        # SDK and the logging stack make large: ~200 ms per exit here, against ~50 ms with them set aside, which is
        # what a recycling worker (max_requests, HUP) costs the arbiter and the requests waiting for a new worker.
        # Nothing is left to collect that matters: the telemetry is flushed, and __del__ at exit is not guaranteed.
        gc.freeze()
