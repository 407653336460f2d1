"""The arbiter side of otel_gunicorn: configuration check and the wiring of lifecycle, channel, store and exporters.

Runs in the arbiter (gunicorn master) only. One :class:`ArbiterRuntime` per master, started in ``when_ready`` (after
gunicorn may have daemonised, before the first worker fork) and stopped in ``on_exit``.

Fork discipline: the process's one at-fork registration (:mod:`otel_gunicorn._fork`, stage "arbiter runtime"; not
``pre_fork``, which misses the USR2 re-exec fork) takes the runtime lock before every fork so no arbiter thread is
mid-update when the address space is copied, releases it afterwards in the parent, and in the child closes every
arbiter socket and hands the worker side what it needs to report. Everything this process keeps between hooks is one
:class:`ArbiterState`, :data:`STATE`.

The rules for workers' lives live in :mod:`otel_gunicorn._arbiter.lifecycle` (pure) and the data in
:mod:`otel_gunicorn._arbiter.merge`; this module only reads gunicorn's state, takes the lock and applies decisions.

Dirty workers (gunicorn >= 25 with ``dirty_apps``) report on the same channel and into the same merge store; their
slots, lives and exits are kept apart in :mod:`otel_gunicorn._arbiter.dirty`. gunicorn forks the dirty arbiter
before ``when_ready``, so :func:`prepare_dirty` (``on_starting``) reserves the channel's directory for them first.

One piece (~450 lines): the composition root, the channel's sink and the hooks' entry points share the one lock and
the one :data:`STATE`; split, each part would reach into the others' state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import time
from typing import Any

from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _handoff, _propagators
from otel_gunicorn._arbiter import server_metrics
from otel_gunicorn._arbiter.channel import ChannelServer, reserve_directory, socket_path
from otel_gunicorn._arbiter.dirty import DirtyPool
from otel_gunicorn._arbiter.lifecycle import Actions, WorkerLifecycle
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._arbiter.otlp import OtlpPusher
from otel_gunicorn._arbiter.peer import is_running, read_proc_stat
from otel_gunicorn._arbiter.process_health import ProcessHealth, ReapedChildren
from otel_gunicorn._arbiter.prometheus import PrometheusEndpoint
from otel_gunicorn._arbiter.route_bound import ServerRouteBound
from otel_gunicorn._arbiter.tls import check_certificates
from otel_gunicorn._config import Config, ConfigError, fail_fast
from otel_gunicorn._fork import FORK, FORK_WAIT, ForkLock
from otel_gunicorn._instruments import DIRTY_CALLS_ACTIVE, DIRTY_SLOT_ATTRIBUTE, SLOT_ATTRIBUTE, for_prometheus
from otel_gunicorn._otel_compat import env_resource_warnings_held_back
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import Snapshot, metrics_data_from_snapshot, payload_from_snapshot

_log = logging.getLogger("otel_gunicorn")


class ArbiterRuntime:
    """Everything otel_gunicorn runs in one arbiter; also the channel's sink (every method takes :attr:`lock`)."""

    def __init__(self, config: Config, server: Any, private_dir: str | None = None) -> None:
        self.config = config
        self._server = server
        self.lock = ForkLock()
        self.store = MergeStore()
        self.lifecycle = WorkerLifecycle()
        self.dirty = DirtyPool()
        self.health = ProcessHealth(config.metrics_interval)
        #: read on the main thread only, at each reaping (child_exit)
        self._reaped = ReapedChildren()
        self.routes = ServerRouteBound(config.max_routes)
        self.start_ns = time.time_ns()
        self.resource = server_resource({"process.pid": os.getpid()})
        self.channel = ChannelServer(config.channel_dir, self, config.max_frame_bytes, private_dir)
        self.endpoint: PrometheusEndpoint | None = None
        if "prometheus" in config.metrics_exporters:
            self.endpoint = PrometheusEndpoint(
                config.prometheus_host,
                config.prometheus_port,
                self.prometheus_snapshot,
                self.sdk_data,
                self.lock,
                config.prometheus_web_config,
                _tcp_ports(server),
            )
        self.pusher: OtlpPusher | None = None
        if "otlp" in config.metrics_exporters:
            self.pusher = OtlpPusher(
                config.otlp_protocol("metrics"),
                config.metric_export_interval,
                self.otlp_payload,
                self.lock,
                temporality=config.metrics_temporality,
                shutdown_timeout=config.push_exit_timeout,
                endpoint=config.otlp_metrics_endpoint,
            )
        self._fork_locked = False
        self._errors = RateLimitedLogger(_log, interval=3600.0)
        self._tick_errors = RateLimitedLogger(_log)

    def start(self) -> None:
        # Render the endpoint once on this (main) thread before any arbiter thread exists, so every module the
        # scrape path imports lazily is imported now: an import in progress on another thread at fork time leaves
        # its module lock held forever in the child.
        with self.lock:
            if self.endpoint is not None:
                self.endpoint.warm_up()
            else:
                self.otlp_payload()
            "localhost".encode("idna")
        self.channel.start()
        if self.endpoint is not None:
            self.endpoint.start()
        if self.pusher is not None:
            self.pusher.start()

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.pusher is not None:
            self.pusher.stop()
        self.channel.stop()

    # ---------------------------------------------------------------- worker lifecycle (main thread)

    def assign_slot(self, worker: Any) -> int:
        """pre_fork: give the worker about to be forked the smallest slot no live worker holds."""
        slot = self.lifecycle.assign_slot(_handoff.slot_of(w) for w in list(self._server.WORKERS.values()))
        setattr(worker, _handoff.SLOT_ATTR, slot)
        return slot

    def worker_exited(self, worker: Any, reaped: bool = False) -> None:
        """The arbiter reaped ``worker`` (child_exit: ``reaped``), or found it already gone (worker_exit on ESRCH)."""
        # right after gunicorn's waitpid, before the next: the kernel's account of the worker's CPU time to its end
        cpu = self._reaped.take() if reaped else None
        with self.lock:
            self._apply(self.lifecycle.reaped(worker.pid, aborted=bool(getattr(worker, "aborted", False))))
            self.health.exited(worker.pid, _handoff.slot_of(worker), cpu)

    # ---------------------------------------------------------------- ChannelSink (channel thread)

    def connected(self, pid: int, dirty: bool = False) -> None:
        with self.lock:
            if dirty:
                self._apply(self.dirty.connected(pid, is_running(pid)))
            elif pid != self.dirty_arbiter_pid():  # the dirty arbiter only reports the pool's limit: not a worker
                self._apply(self.lifecycle.connected(pid, self._live_slot(pid)))

    def report(self, pid: int, snapshot: Snapshot) -> None:
        with self.lock:
            if pid == self.dirty_arbiter_pid():
                self.dirty.arbiter_reported(pid, snapshot)
                return
            dirty = self.dirty.tracks(pid)
            verdict = self.dirty.report(pid) if dirty else self.lifecycle.report(pid, self._live_slot(pid))
            if verdict.accepted:
                snapshot = self._bounded(snapshot)
                self.store.report(pid, verdict.slot, snapshot, DIRTY_SLOT_ATTRIBUTE if dirty else SLOT_ATTRIBUTE)
                if not verdict.live:
                    self.store.drop_gauges(pid)

    def _bounded(self, snapshot: Snapshot) -> Snapshot:
        """The report with its routes past the server's bound folded (``route_bound.py``); as it came if that fails."""
        try:
            return self.routes.fold(snapshot)
        except Exception as exc:  # noqa: BLE001 - the arbiter never fails a report for the bound: keep it whole
            self._errors.log(logging.WARNING, "routes", "otel_gunicorn: bounding a report's routes failed: %r", exc)
            return snapshot

    def goodbye(self, pid: int, reason: str) -> None:
        with self.lock:
            (self.dirty if self.dirty.tracks(pid) else self.lifecycle).goodbye(pid, reason)

    def disconnected(self, pid: int, running: bool) -> None:
        with self.lock:
            self._apply((self.dirty if self.dirty.tracks(pid) else self.lifecycle).disconnected(pid, running))

    def leaked(self) -> set[int]:
        with self.lock:
            actions = self.lifecycle.sweep(set(self._server.WORKERS)) | self.dirty.sweep(self._is_dirty_worker)
            self._apply(actions)
            return set(actions.close)

    def tick(self) -> float:
        """Channel thread, between its reads: a round of ``/proc`` reads when one is due (outside the lock, so that a
        fork or a scrape never waits for them); the seconds until the next."""
        try:
            due = self.health.seconds_until_due()
            if due > 0:
                return due
            workers = [(pid, _handoff.slot_of(worker)) for pid, worker in list(self._server.WORKERS.items())]
            readings = self.health.take_readings(workers)
            with self.lock:
                self.health.apply(readings, set(self._server.WORKERS))
            return self.health.seconds_until_due()
        except Exception as exc:  # noqa: BLE001 - the channel thread must outlive a failing read
            self._tick_errors.log(logging.ERROR, "health", "otel_gunicorn: reading the workers' /proc failed: %r", exc)
            return 1.0

    def reaped_awaiting(self, pid: int) -> bool:
        with self.lock:
            return self.lifecycle.reaped_awaiting(pid)

    def dirty_arbiter_pid(self) -> int | None:
        """gunicorn's current dirty arbiter (it sets the pid after the fork and resets it to 0 once reaped)."""
        pid = getattr(self._server, "dirty_arbiter_pid", None)
        return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None

    def _is_dirty_worker(self, pid: int) -> bool:
        """``pid`` still runs as a child of the current dirty arbiter (not exited, not a zombie, not orphaned)."""
        stat = read_proc_stat(pid)
        return stat is not None and stat.state not in ("Z", "X") and stat.ppid == self.dirty_arbiter_pid()

    def _live_slot(self, pid: int) -> int | None:
        # Read under the lock: gunicorn drops a worker from WORKERS before child_exit takes the lock, so a pid the
        # lifecycle holds as reaped is never read back here as live unless a new process reused it.
        return _handoff.slot_of(self._server.WORKERS.get(pid))

    def _apply(self, actions: Actions) -> None:
        for pid in actions.drop_gauges:
            self.store.drop_gauges(pid)
        for pid in actions.retire:
            self.store.retire(pid)

    # ---------------------------------------------------------------- the merged view

    def merged_snapshot(self) -> Snapshot:
        """Merged worker metrics plus the arbiter's own; call with :attr:`lock` held."""
        snapshot = self.store.merged()
        if self.store.conflicts:
            self._errors.log(
                logging.WARNING,
                "conflicts",
                "otel_gunicorn: dropped %d histogram points whose bucket boundaries differ between workers "
                "(do all workers run the same code?)",
                self.store.conflicts,
            )
        snapshot.update(server_metrics.collect(self._server, self.store, self.lifecycle.exits))
        active_calls = self.store.sums_by_pid(DIRTY_CALLS_ACTIVE.name) if self.dirty.slots else {}
        snapshot.update(self.dirty.metrics(self.dirty_arbiter_pid(), active_calls))
        snapshot.update(server_metrics.utilization_metrics(self._server, snapshot))
        snapshot.update(server_metrics.own_metrics(self.channel.stats, self.pusher, self.endpoint))
        snapshot.update(self.health.metrics())
        return snapshot

    def prometheus_snapshot(self) -> Snapshot:
        """:meth:`merged_snapshot` under the names the Prometheus endpoint gives its metrics
        (:func:`~otel_gunicorn._instruments.for_prometheus`); call with :attr:`lock` held."""
        return for_prometheus(self.merged_snapshot())

    def metrics_data(self) -> MetricsData:
        """:meth:`merged_snapshot` as SDK data; call with :attr:`lock` held."""
        return self.sdk_data(self.merged_snapshot())

    def sdk_data(self, snapshot: Snapshot) -> MetricsData:
        """``snapshot`` (all of a merged snapshot or a part) as SDK data with this server's resource and start time,
        for the Prometheus exporter."""
        return metrics_data_from_snapshot(snapshot, self.resource, self.start_ns, time.time_ns())

    def otlp_payload(self) -> dict[str, Any]:
        """:meth:`merged_snapshot` as a wire payload for the exporter process; call with :attr:`lock` held."""
        payload = payload_from_snapshot(self.merged_snapshot())
        payload.update(resource=dict(self.resource.attributes), start=self.start_ns, time=time.time_ns())
        return payload

    # ---------------------------------------------------------------- fork handlers

    def before_fork(self) -> None:
        self._fork_locked = self.lock.hold_for_fork()
        if not self._fork_locked:
            _log.warning("otel_gunicorn: an arbiter thread held its lock for %.0f s; forking anyway", FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        self.lock.release_after_fork(self._fork_locked)
        self._fork_locked = False

    def after_fork_in_child(self) -> None:
        self.channel.close_in_child()
        if self.endpoint is not None:
            self.endpoint.close_in_child()
        if self.pusher is not None:
            self.pusher.close_in_child()
        _handoff.inherit(self.config, self.channel.path, server_resource_attributes(self.resource))


def _tcp_ports(server: Any) -> frozenset[int]:
    """The TCP ports of gunicorn's listeners (bound before ``when_ready``)."""
    ports = set()
    for listener in getattr(server, "LISTENERS", None) or []:
        try:
            address = listener.sock.getsockname()
        except (AttributeError, OSError):
            continue
        if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
            ports.add(address[1])
    return frozenset(ports)


def server_resource(attributes: dict[str, Any]) -> Resource:
    """The server's resource: ``Resource.create`` (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, the SDK's
    detectors) with ``host.name`` and ``attributes``. A malformed ``OTEL_RESOURCE_ATTRIBUTES`` was reported by
    :func:`check_config`, once: the SDK's line is held back."""
    with env_resource_warnings_held_back():
        return Resource.create({"host.name": socket.gethostname(), **attributes})


def server_resource_attributes(resource: Resource) -> dict[str, Any]:
    """What a worker's spans and logs share with the server's metrics: the resource, less the master's pid."""
    return {k: v for k, v in resource.attributes.items() if k != "process.pid"}


@dataclasses.dataclass
class ArbiterState:
    """Everything otel_gunicorn keeps in an arbiter process, in one object: a reader sees all of it at once, and
    :meth:`reset` (tests) clears it in one call. Written on gunicorn's main thread only (its hooks)."""

    #: the configuration ``on_starting`` read, once per master (a bad value stopped gunicorn instead)
    config: Config | None = None
    #: ``on_starting`` / ``when_ready`` have done their work (a user's hook may have replaced ours: hooks.py)
    started: bool = False
    ready: bool = False
    #: the channel directory ``on_starting`` reserved for the dirty side (:func:`prepare_dirty`), the channel's later
    reserved_dir: str | None = None
    #: the running runtime (metrics on); dropped in every forked child
    runtime: ArbiterRuntime | None = None
    #: metrics off: what a worker still inherits for its spans and log export
    spans_and_logs_only: _handoff.ArbiterLink | None = None
    #: under opentelemetry-instrument: the distro's MeterProvider, held aside until taken over or put back
    #: (:mod:`otel_gunicorn._arbiter.autoinstrument`), and what the take-over stopped of the distro's set-up
    distro_meter_provider: Any = None
    distro_stopped: tuple[str, ...] = ()

    def reset(self) -> None:
        """Back to a process where no hook has run."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, field.default)


#: this arbiter's state (see :class:`ArbiterState`)
STATE = ArbiterState()


def _before_fork() -> None:
    if STATE.runtime is not None:
        STATE.runtime.before_fork()


def _after_fork_in_parent() -> None:
    if STATE.runtime is not None:
        STATE.runtime.after_fork_in_parent()


def _after_fork_in_child() -> None:
    runtime, link = STATE.runtime, STATE.spans_and_logs_only
    STATE.reset()  # the child is a worker: none of the arbiter's state is its own
    if runtime is not None:
        runtime.after_fork_in_child()
    elif link is not None:  # metrics off: the worker still gets its spans and log export
        _handoff.inherit(link.config, link.channel_path, link.resource_attributes)


def _join_fork_handlers() -> None:
    FORK.join(
        "arbiter runtime",
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


# ---------------------------------------------------------------- what the gunicorn hooks call


def check_config(environ: dict[str, str] | None = None) -> Config:
    """Read the configuration once; on a bad value print one line and stop gunicorn before anything forks.

    A web-config's certificate, key and client CA are loaded here too: ``Config.from_env`` only parses the file, and a
    pair that does not load must stop gunicorn now, not at the first scrape.
    """
    source = os.environ if environ is None else environ
    pending = _propagators.take_pending_warning()  # found at import time, before gunicorn's logging was set up
    if pending is not None:
        _log.warning("otel_gunicorn: %s", pending)
    try:
        config = Config.from_env(source)
        check_certificates(config.prometheus_web_config, source)
    except ConfigError as exc:
        fail_fast(exc)
    STATE.config = config
    return config


def prepare_dirty(server: Any) -> None:
    """``on_starting``: when gunicorn will fork a dirty arbiter (gunicorn >= 25 with ``dirty_apps``), reserve the
    channel's directory now and record its path for the dirty side, which is forked before ``when_ready`` starts the
    channel. Without dirty apps, or with metrics off, nothing happens."""
    cfg = getattr(server, "cfg", None)
    dirty_workers = getattr(cfg, "dirty_workers", 0)  # gunicorn < 25: no such setting
    if not (isinstance(dirty_workers, int) and dirty_workers > 0 and getattr(cfg, "dirty_apps", None)):
        return
    config = STATE.config or check_config()
    if STATE.reserved_dir is not None or not (config.enabled and config.metrics_enabled):
        return
    try:
        STATE.reserved_dir = reserve_directory(config.channel_dir)
    except OSError as exc:
        _log.warning("otel_gunicorn: no metrics from dirty workers, the channel directory failed: %s", exc)
        return
    _handoff.reserve_for_dirty(config, socket_path(STATE.reserved_dir))


def start(server: Any) -> None:
    """Start the arbiter side (idempotent: ``when_ready`` runs once per master, never again on HUP)."""
    config = STATE.config or check_config()
    if STATE.runtime is not None or not config.enabled:
        return
    _join_fork_handlers()
    if not config.metrics_enabled:
        # OTEL_METRICS_EXPORTER=none: no channel, no endpoint; workers still trace and export logs if asked to
        resource = server_resource({})
        STATE.spans_and_logs_only = _handoff.ArbiterLink(config, None, server_resource_attributes(resource))
        return
    runtime = None
    try:
        runtime = ArbiterRuntime(config, server, STATE.reserved_dir)
        runtime.start()
    except Exception:  # noqa: BLE001 - telemetry must never take the server down: it runs without it
        _log.exception("otel_gunicorn: could not start in the arbiter; the application runs without its telemetry")
        if runtime is not None:
            _stop_quietly(runtime)
        elif STATE.reserved_dir is not None:  # the channel never took the reserved directory over
            shutil.rmtree(STATE.reserved_dir, ignore_errors=True)
        return
    STATE.runtime = runtime


def _stop_quietly(runtime: ArbiterRuntime) -> None:
    try:
        runtime.stop()
    except Exception:  # noqa: BLE001 - already failing; the first error was logged
        _log.debug("otel_gunicorn: cleaning up after a failed start failed too", exc_info=True)


def stop() -> None:
    runtime, STATE.runtime = STATE.runtime, None
    if runtime is not None:
        runtime.stop()


def current() -> ArbiterRuntime | None:
    """The running arbiter runtime of this process, if any."""
    return STATE.runtime
