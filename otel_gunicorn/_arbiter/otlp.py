"""OTLP push from the arbiter: every ``OTEL_METRIC_EXPORT_INTERVAL`` the merged metrics go to the exporter process.

Runs in the arbiter. The OTLP client itself lives in a child process (:mod:`otel_gunicorn._exporter`) started with
fork+exec, because the arbiter forks workers all its life and grpc does not survive that. This side only builds
the merged snapshot (under the runtime lock) and writes it to the child's stdin without ever blocking: when the pipe
is full — the child is stuck on a slow collector — the new snapshot is dropped and counted (the next one, being
cumulative, carries everything). A child that dies is restarted with backoff; stopping closes its stdin so it
sends what it has and exits, and kills it if it has not within the arbiter's share of ``OTEL_GUNICORN_SHUTDOWN_TIMEOUT``
(the SDK exporter it runs retries for up to ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default, and a collector that
never answers holds a request for as long).
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from otel_gunicorn import _environment as env
from otel_gunicorn._config import Config
from otel_gunicorn._fork import ForkLock
from otel_gunicorn._gunicorn_log import applied_log_format
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._wire import FrameKind, encode_frame

_log = logging.getLogger("otel_gunicorn")
_RESTART_BACKOFF_MAX = 60.0
#: what the configuration gives a pusher when nothing is set (``OTEL_METRICS_EXPORTER=otlp`` alone)
_DEFAULTS = Config(metrics_exporters=frozenset({"otlp"}))


class OtlpPusher:
    """Feeds the exporter process.

    Args:
        protocol: ``http/protobuf`` or ``grpc``.
        interval: seconds between pushes.
        produce: returns the payload to push; called with ``lock`` held.
        lock: the runtime lock (held across every fork).
        temporality: ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` as the configuration validated it.
        shutdown_timeout: seconds :meth:`stop` may take (``Config.push_exit_timeout``).
        endpoint: the URL pushed to (``Config.otlp_metrics_endpoint``), given to the exporter process as
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``, so that it uses the URL logged (corrected, if it had to be);
            None: the exporter reads the variables itself.
    """

    def __init__(
        self,
        protocol: str,
        interval: float,
        produce: Callable[[], dict[str, Any]],
        lock: ForkLock,
        *,
        temporality: str = _DEFAULTS.metrics_temporality,
        shutdown_timeout: float = _DEFAULTS.push_exit_timeout,
        endpoint: str | None = None,
    ):
        self._protocol = protocol
        self._interval = interval
        self._temporality = temporality
        self._shutdown_timeout = shutdown_timeout
        self._endpoint = endpoint
        self._produce = produce
        self._lock = lock
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-gunicorn-otlp", daemon=True)
        self._errors = RateLimitedLogger(_log)
        self.pushed = 0
        self.dropped = 0
        self.restarts = 0

    def start(self) -> None:
        if self._endpoint is not None:
            _log.info(
                "otel_gunicorn: pushing metrics to %s (OTLP %s) every %g s",
                self._endpoint,
                self._protocol,
                self._interval,
            )
        self._spawn()
        self._thread.start()

    def stop(self) -> None:
        """Push one last time, then let the child export it and exit; kill it when the shutdown budget is spent."""
        deadline = time.monotonic() + self._shutdown_timeout
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=_left(deadline))
        self._push()
        process = self._process
        if process is None:
            return
        self._close_pipe()
        try:
            process.wait(_left(deadline))
        except subprocess.TimeoutExpired:
            process.kill()
            _log.warning(
                "otel_gunicorn: the OTLP exporter process had not delivered the last metrics after %g s (the "
                "arbiter's share of %s); stopped it: what the collector did not receive since its last successful "
                "export is lost",
                self._shutdown_timeout,
                env.OTEL_GUNICORN_SHUTDOWN_TIMEOUT,
            )
            try:
                process.wait(1.0)  # a killed process is reaped at once; the bound is for one stuck in the kernel
            except subprocess.TimeoutExpired:
                pass

    def close_in_child(self) -> None:
        """In a freshly forked worker: the pipe to the exporter process belongs to the arbiter."""
        self._close_pipe()

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.wait(self._interval):
            process = self._process
            if process is None or process.poll() is not None:
                self._errors.log(logging.WARNING, "died", "otel_gunicorn: the OTLP exporter process exited; restarting")
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, _RESTART_BACKOFF_MAX)
                with self._lock:  # a worker forked while the new pipe exists must know to close it
                    self._spawn()
                self.restarts += 1
                continue
            backoff = 1.0
            self._push()

    def _spawn(self) -> None:
        self._close_pipe()
        self._pending = b""
        # The child gets the validated temporality in the standard variable itself, so that the SDK exporter it
        # builds (which reads the variable too, and would warn about a bad value once more) sees the same value.
        environ = dict(os.environ, **{env.OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: self._temporality})
        # Not under opentelemetry-instrument: its sitecustomize would set the distro up again in the child (providers
        # and instrumentors it never uses, a second Prometheus server on the same port with prometheus,otlp).
        without_auto_instrumentation(environ)
        if self._endpoint is not None:
            environ[env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT] = self._endpoint
        # Its log lines in the server's format, also when a configuration file fixed it (logconfig_dict("json"))
        # rather than the variable.
        log_format = applied_log_format()
        if log_format is not None:
            environ[env.OTEL_GUNICORN_LOG_FORMAT] = log_format
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "otel_gunicorn._exporter",
                    self._protocol,
                    *([self._endpoint] if self._endpoint else []),
                ],
                stdin=subprocess.PIPE,
                close_fds=True,
                env=environ,
            )
        except OSError as exc:
            self._process = None
            self._errors.log(logging.ERROR, "spawn", "otel_gunicorn: cannot start the OTLP exporter process: %s", exc)
            return
        assert self._process.stdin is not None
        os.set_blocking(self._process.stdin.fileno(), False)

    def _push(self) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.closed:
            return
        if self._pending and not self._flush():
            self.dropped += 1  # the child has not even taken the previous snapshot: it is stuck on the collector
            return
        with self._lock:
            payload = self._produce()
        self._pending = encode_frame(FrameKind.SNAPSHOT, payload)
        if self._flush() or self._pending:  # delivered, or at least under way (the pipe was full)
            self.pushed += 1

    def _flush(self) -> bool:
        """Write what is pending without blocking; True when all of it went."""
        process = self._process
        if process is None or process.stdin is None:
            return False
        try:
            while self._pending:
                written = os.write(process.stdin.fileno(), self._pending)
                self._pending = self._pending[written:]
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                self._errors.log(
                    logging.WARNING, "write", "otel_gunicorn: writing to the OTLP exporter failed: %s", exc
                )
            self._pending = b""
            return False
        return True

    def _close_pipe(self) -> None:
        process = self._process
        if process is not None and process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                pass


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def without_auto_instrumentation(environ: dict[str, str]) -> None:
    """Drop ``opentelemetry-instrument``'s ``sitecustomize`` directory from ``environ['PYTHONPATH']`` (the directory
    of the already imported module that put it there; nothing when that module is not loaded)."""
    module = sys.modules.get("opentelemetry.instrumentation.auto_instrumentation")
    path = environ.get("PYTHONPATH")
    where = getattr(module, "__file__", None)
    if not path or not where:
        return
    ours = os.path.dirname(os.path.abspath(where))
    kept = [entry for entry in path.split(os.pathsep) if entry and os.path.abspath(entry) != ours]
    if kept:
        environ["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        del environ["PYTHONPATH"]
