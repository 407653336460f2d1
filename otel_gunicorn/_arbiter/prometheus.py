"""The arbiter's Prometheus endpoint: merged metrics rendered by the official OpenTelemetry Prometheus exporter.

Runs in the arbiter only. The exporter's ``PrometheusMetricReader`` normally pulls from a ``MeterProvider``; here it
pulls from the merge store instead (:class:`MergedMetricsReader`), so names, units, ``target_info`` and scope labels
follow the official OTel→Prometheus mapping, and prometheus_client serves text and OpenMetrics. A web-config file
(``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG``) adds HTTPS (``tls.py``) and basic authentication (``basic_auth.py``).

Hazards:

* the exporter writes two families with one name when two scopes emit the same metric name (e.g. an
  instrumentation's ``http.server.active_requests`` beside ours), which Prometheus rejects whole;
  :class:`OneFamilyPerName` folds them into one family;
* the port may be taken (a second master during USR2, another program): the application must keep serving, so
  binding is retried in the background with backoff and the failure is logged once. What no retry can fix — a host
  that does not resolve or is not an address of this machine, gunicorn's own port, a port needing privileges — is
  logged once as an error and the endpoint stays off;
* fork: scrapes compute under the runtime lock, which the fork handler holds across ``fork()``.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric

from otel_gunicorn._arbiter.basic_auth import secure_app
from otel_gunicorn._arbiter.forklock import ForkLock
from otel_gunicorn._arbiter.tls import TLSThreadingWSGIServer, ssl_context
from otel_gunicorn._environment import OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._webconfig import WebConfig

_log = logging.getLogger("otel_gunicorn")

#: seconds a scrape connection may stay silent before it is dropped (a stuck scraper holds only its own thread)
SCRAPE_SOCKET_TIMEOUT = 10.0
_BIND_RETRY_INITIAL = 0.5
# Short, because the common reason the port is taken is the old master during a USR2 upgrade: the new master must
# take the endpoint over within a second of the old one leaving. A failed bind() costs next to nothing.
_BIND_RETRY_MAX = 1.0


class MergedMetricsReader(PrometheusMetricReader):
    """A ``PrometheusMetricReader`` whose collection is the arbiter's merged view rather than a MeterProvider's."""

    def __init__(self, produce: Callable[[], MetricsData], registry: CollectorRegistry) -> None:
        super().__init__(registry=registry)
        self._produce = produce

    # MetricReader.collect is marked @final for typing, but the Python SDK implements no MetricProducer through
    # which foreign (here: merged) data could reach a reader; overriding collect is the one seam that keeps the
    # official exporter's naming and exposition intact.
    def collect(self, timeout_millis: float = 10_000) -> None:  # type: ignore[misc]  # noqa: ARG002
        self._receive_metrics(self._produce())


class OneFamilyPerName:
    """A prometheus_client collector re-emitting ``source``'s families with same-named ones folded into one.

    Samples of a later family with the same name and type join the first; a same-named family of a different type
    cannot be represented and is dropped (counted in :attr:`dropped_families`).
    """

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source
        self.dropped_families = 0
        self._errors = RateLimitedLogger(_log)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for family in self._source.collect():
            first = families.get(family.name)
            if first is None:
                families[family.name] = family
            elif first.type == family.type:
                first.samples.extend(family.samples)
            else:
                self.dropped_families += 1
                self._errors.log(
                    logging.WARNING,
                    family.name,
                    "otel_gunicorn: metric %s is both a %s and a %s; only the %s is exposed",
                    family.name,
                    first.type,
                    family.type,
                    first.type,
                )
        return iter(families.values())


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPE_SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes are not logged: every few seconds, forever."""


class PrometheusEndpoint:
    """Serves the merged metrics over HTTP from a thread in the arbiter.

    Args:
        host, port: where to listen.
        produce: returns the merged ``MetricsData``; called under ``lock``.
        lock: the runtime lock (held across every fork).
        web: the ``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG`` file, parsed: TLS, basic auth, extra headers.
        app_ports: the TCP ports gunicorn itself listens on, to tell "taken by the application" (never free) from
            "taken for now" (the old master during USR2).
    """

    def __init__(
        self,
        host: str,
        port: int,
        produce: Callable[[], MetricsData],
        lock: ForkLock,
        web: WebConfig | None = None,
        app_ports: frozenset[int] = frozenset(),
    ) -> None:
        self._host = host
        self._port = port
        self._app_ports = app_ports
        self._lock = lock
        staging = CollectorRegistry(auto_describe=False)
        self.reader = MergedMetricsReader(produce, staging)
        self.families = OneFamilyPerName(staging)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.families)  # type: ignore[arg-type]
        self._app = make_wsgi_app(self.registry)
        # Authentication wraps _wsgi from outside: a bcrypt check (~100 ms) must never run under the runtime lock,
        # which every fork waits for.
        self._served = self._wsgi if web is None else secure_app(self._wsgi, web)
        # Built here, on the main thread before any fork; runtime.check_config already loaded the same files once.
        self._ssl = None if web is None else ssl_context(web)
        self._server: ThreadingWSGIServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bind_failures = 0

    @property
    def tls(self) -> bool:
        """Whether the endpoint serves HTTPS (a web-config with ``tls_server_config``)."""
        return self._ssl is not None

    @property
    def handshakes_failed(self) -> int:
        """TLS handshakes that failed on this endpoint (0 without TLS, or before it is bound)."""
        server = self._server
        return int(getattr(server, "handshake_failures", 0)) if server is not None else 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="otel-gunicorn-prometheus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        server = self._server
        if server is not None:
            server.server_close()

    def close_in_child(self) -> None:
        """In a freshly forked worker: close the inherited listening socket; the serving thread does not exist here."""
        server = self._server
        if server is not None:
            server.socket.close()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            return self._app(environ, start_response)  # type: ignore[no-any-return]

    def _run(self) -> None:
        delay = _BIND_RETRY_INITIAL
        while not self._stop.is_set():
            try:
                server = self._bind()
            except (OSError, ValueError) as exc:  # ValueError: a host name that cannot be encoded
                self.bind_failures += 1
                hopeless = self._hopeless(exc)
                if hopeless is not None:
                    _log.error(
                        "otel_gunicorn: no Prometheus endpoint: %s; the application is unaffected, fix the variable "
                        "and restart to get one",
                        hopeless,
                    )
                    return
                if self.bind_failures == 1:
                    _log.warning(
                        "otel_gunicorn: cannot serve metrics on %s:%d (%s); the application is unaffected, "
                        "retrying in the background",
                        self._host,
                        self._port,
                        exc,
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, _BIND_RETRY_MAX)
                continue
            host, port = str(server.server_address[0]), server.server_address[1]
            scheme = "http" if self._ssl is None else "https"
            _log.info("otel_gunicorn: serving metrics at %s://%s:%d/metrics", scheme, _url_host(host), port)
            # handle_request() with a timeout rather than serve_forever(): stop() then never waits on a loop
            # that has not started yet, and the thread notices the stop within one poll.
            server.timeout = 0.5
            while not self._stop.is_set():
                server.handle_request()
            return

    def _hopeless(self, exc: Exception) -> str | None:
        """Why binding can never succeed with this host and port, or None when a retry might."""
        host = f"{OTEL_EXPORTER_PROMETHEUS_HOST}={self._host!r}"
        port = f"{OTEL_EXPORTER_PROMETHEUS_PORT}={self._port}"
        if isinstance(exc, socket.gaierror):
            return f"{host} does not resolve ({exc.strerror})"
        if not isinstance(exc, OSError):  # ValueError: a host name that cannot be encoded
            return f"{host} is not a host name ({exc})"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this machine"
        if exc.errno == errno.EADDRINUSE and self._port in self._app_ports:
            return f"{port} is a port gunicorn itself listens on; pick another"
        if exc.errno == errno.EACCES:
            return f"{port} needs privileges this process does not have (ports below 1024)"
        return None

    def _bind(self) -> ThreadingWSGIServer:
        # All of it under the fork lock, name resolution included: getaddrinfo() of a str host imports
        # encodings.idna on first use, and a worker forked while this thread holds that module's import lock
        # deadlocks on its first `import requests` (seen: a worker stuck in _ModuleLock.acquire).
        with self._lock:
            if self._stop.is_set():
                raise OSError("stopping")
            family, host = _best_family(self._host, self._port)
            tls = self._ssl

            # With TLS, the listening socket is wrapped once listening and each handshake runs in its connection's
            # thread (see tls.TLSThreadingWSGIServer): a silent client cannot stall the accept loop.
            class _Server(TLSThreadingWSGIServer):
                address_family = family
                ssl_context = tls
                handshake_timeout = SCRAPE_SOCKET_TIMEOUT
                # socketserver's default accept queue of 5 drops connections when many scrapers arrive at once
                # (100 concurrent scrapes: hundreds of SYNs dropped, clients retrying after 1, 3, 7 s)
                request_queue_size = 128

            server = make_server(host, self._port, self._served, _Server, handler_class=_QuietHandler)
            self._server = server
        return server


def _best_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
