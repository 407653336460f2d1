"""The arbiter's Prometheus endpoint: merged metrics rendered by the official OpenTelemetry Prometheus exporter.

Runs in the arbiter only. The exporter's ``PrometheusMetricReader`` normally pulls from a ``MeterProvider``; here it
pulls from the merge store instead (:class:`MergedMetricsReader`), so names, units, ``target_info`` and scope labels
follow the official OTel→Prometheus mapping, and prometheus_client's encoders render text and OpenMetrics, as its
``make_wsgi_app`` negotiates them (``Accept``, ``Accept-Encoding: gzip``). A scrape reuses what the previous ones
translated and rendered for the families that did not change (``exposition_cache.py``: the bytes are the same);
what the cached path does not serve (``name[]`` filters, methods other than GET) goes to prometheus_client's own
WSGI application. A web-config file (``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG``) adds HTTPS (``tls.py``) and basic
authentication (``basic_auth.py``).

Hazards:

* the exporter writes two families with one name when two scopes emit the same metric name (e.g. an
  instrumentation's ``http.server.active_requests`` beside ours), which Prometheus rejects whole;
  :class:`OneFamilyPerName` folds them into one family;
* the port may be taken (a second master during USR2, another program): the application must keep serving, so
  binding is retried in the background with backoff and the failure is logged once, naming the processes that hold
  the port (``_probes/port_holders.py``). What no retry can fix — a host that does not resolve or is not an address
  of this machine, gunicorn's own port, a port this very process already listens on (a server started by the
  configuration file or a preloaded application), a port needing privileges — is logged once as an error and the
  endpoint stays off;
* fork: scrapes compute under the runtime lock, which the fork handler holds across ``fork()`` (the cache is only
  read and written under it); authentication (bcrypt) and the socket I/O happen outside it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from opentelemetry.sdk.metrics.export import MetricsData
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted

from otel_gunicorn._arbiter.basic_auth import secure_app
from otel_gunicorn._arbiter.exposition import MergedMetricsReader, OneFamilyPerName
from otel_gunicorn._arbiter.exposition_cache import ExpositionCache
from otel_gunicorn._arbiter.tls import TLSThreadingWSGIServer, ssl_context
from otel_gunicorn._environment import OTEL_EXPORTER_PROMETHEUS_HOST, OTEL_EXPORTER_PROMETHEUS_PORT
from otel_gunicorn._fork import ForkLock
from otel_gunicorn._probes import port_holders
from otel_gunicorn._snapshot import Snapshot
from otel_gunicorn._webconfig import WebConfig

__all__ = ["MergedMetricsReader", "OneFamilyPerName", "PrometheusEndpoint"]

_log = logging.getLogger("otel_gunicorn")

#: seconds a scrape connection may stay silent before it is dropped (a stuck scraper holds only its own thread)
SCRAPE_SOCKET_TIMEOUT = 10.0
_BIND_RETRY_INITIAL = 0.5
#: holders of a taken port named in the warning (an old master's workers inherit its socket: there may be many)
_HOLDERS_NAMED = 3
# Short, because the common reason the port is taken is the old master during a USR2 upgrade: the new master must
# take the endpoint over within a second of the old one leaving. A failed bind() costs next to nothing.
_BIND_RETRY_MAX = 1.0


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPE_SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Scrapes are not logged: every few seconds, forever."""


class PrometheusEndpoint:
    """Serves the merged metrics over HTTP from a thread in the arbiter.

    Args:
        host, port: where to listen.
        produce: returns the merged snapshot (workers' and the arbiter's own metrics); called under ``lock``; the
            points dicts it returns must not be modified afterwards (the scrape cache compares them by identity).
        to_sdk: a snapshot as SDK ``MetricsData`` (the server's resource and start time); called under ``lock``.
        lock: the runtime lock (held across every fork).
        web: the ``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG`` file, parsed: TLS, basic auth, extra headers.
        app_ports: the TCP ports gunicorn itself listens on, to tell "taken by the application" (never free) from
            "taken for now" (the old master during USR2).
    """

    def __init__(
        self,
        host: str,
        port: int,
        produce: Callable[[], Snapshot],
        to_sdk: Callable[[Snapshot], MetricsData],
        lock: ForkLock,
        web: WebConfig | None = None,
        app_ports: frozenset[int] = frozenset(),
    ) -> None:
        self._host = host
        self._port = port
        self._app_ports = app_ports
        self._lock = lock
        self.exposition = ExpositionCache(produce, to_sdk)
        #: counts the families dropped for a type conflict
        self.families = self.exposition.families
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.exposition)
        self._fallback = make_wsgi_app(self.registry)
        # Authentication wraps _wsgi from outside: a bcrypt check (~100 ms) must never run under the runtime lock,
        # which every fork waits for.
        self._served = self._wsgi if web is None else secure_app(self._wsgi, web)
        #: the WSGI application the server runs (with authentication when the web-config asks for it)
        self.app = self._served
        # Built here, on the main thread before any fork; runtime.check_config already loaded the same files once.
        self._ssl = None if web is None else ssl_context(web)
        self._server: ThreadingWSGIServer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.bind_failures = 0
        #: who held the port at the first failure to bind it for that reason (pids; empty when none could be seen)
        self._holders: set[int] | None = None

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

    def warm_up(self) -> None:
        """Render every format once (call on the main thread before any arbiter thread exists): every module the
        scrape path imports lazily is imported now, since an import in progress on another thread at fork time
        leaves its module lock held forever in the child."""
        with self._lock:
            for accept in (None, "application/openmetrics-text; version=1.0.0"):
                self.exposition.render(accept, compress=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # What prometheus_client's make_wsgi_app does for a plain GET, through the cache; anything else (OPTIONS,
        # other methods, /favicon.ico, a name[] filter) to that application itself.
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in parse_qs(environ.get("QUERY_STRING", ""))
        ):
            with self._lock:
                return self._fallback(environ, start_response)  # type: ignore[no-any-return]
        compress = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        with self._lock:
            body, content_type = self.exposition.render(environ.get("HTTP_ACCEPT"), compress)
        headers = [("Content-Type", content_type)]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    def _run(self) -> None:
        delay = _BIND_RETRY_INITIAL
        while not self._stop.is_set():
            try:
                server = self._bind()
            except (OSError, ValueError) as exc:  # ValueError: a host name that cannot be encoded
                self.bind_failures += 1
                if self._holders is None and isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                    self._holders = port_holders.holders(self._port)
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
                        "otel_gunicorn: cannot serve metrics on %s:%d (%s%s); the application is unaffected, "
                        "retrying in the background",
                        self._host,
                        self._port,
                        exc,
                        _held_by(self._holders or set()),
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
        if exc.errno == errno.EADDRINUSE and os.getpid() in (self._holders or ()):
            return (
                f"{port} is taken by this very process (pid {os.getpid()}, the gunicorn arbiter): something in it "
                "started a server there (gunicorn's configuration file, an application loaded with --preload, e.g. "
                "prometheus_client.start_http_server), so no retry can free it; stop that server, or pick another "
                "port"
            )
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


def _held_by(pids: set[int]) -> str:
    """``; held by pid N (its command name), ...`` for the warning, the parent of this process said as such (the old
    master during a USR2 upgrade: it frees the port when it exits); empty when no holder could be seen."""
    if not pids:
        return ""
    parent = os.getppid()
    first = sorted(pids, key=lambda pid: (pid != parent, pid))[:_HOLDERS_NAMED]
    named = [
        f"pid {pid} ({port_holders.command_name(pid)}{', the parent of this process' if pid == parent else ''})"
        for pid in first
    ]
    more = f" and {len(pids) - len(first)} more" if len(pids) > len(first) else ""
    return "; held by " + ", ".join(named) + more


def _best_family(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
