"""Fetching one exposition for ``otel-gunicorn top``: plain HTTP or HTTPS, basic auth, every failure one line.

Runs in the operator's terminal. :func:`endpoint` turns the command line into an :class:`Endpoint` (checked once,
before the first refresh); :func:`fetch` is the only network I/O of the view. It uses ``http.client`` directly, not
``urllib``: no proxy from the environment is applied to what is usually a loopback address, no redirect is
followed, and each failure maps to one :class:`~.errors.TopError` whose message never shows the password (the URL
shown is stripped of its credentials).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import socket
import ssl
from urllib.parse import SplitResult, unquote, urlsplit

from otel_gunicorn._top.errors import CREDENTIALS, NOT_OTEL_GUNICORN, TLS, UNREACHABLE, USAGE, TopError

#: the Prometheus text format, which prometheus_client's parser reads (not OpenMetrics)
ACCEPT = "text/plain;version=0.0.4"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where to scrape and how; ``url`` carries no credentials and is safe to print."""

    url: str
    authorization: str | None = None
    user: str | None = None
    context: ssl.SSLContext | None = None
    timeout: float = 5.0


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    cacert: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None

    @property
    def given(self) -> bool:
        return bool(self.insecure or self.files())

    def files(self) -> list[tuple[str, str]]:
        """``(option, path)`` of each file given."""
        named = (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key))
        return [(option, path) for option, path in named if path]


def endpoint(url: str, *, user: str | None, password: str | None, tls: TlsOptions, timeout: float = 5.0) -> Endpoint:
    """The endpoint to scrape; ``user:pass@`` in the URL is used unless ``user`` is given. TopError(USAGE) if bad."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TopError(USAGE, f"not an http:// or https:// URL: {url!r}")
    name = user if user is not None else (unquote(parts.username) if parts.username else None)
    secret = password if user is not None or parts.password is None else unquote(parts.password)
    if name is not None and secret is None:
        raise TopError(USAGE, f"user {name!r} needs a password: --password-file FILE or OTEL_GUNICORN_TOP_PASSWORD")
    if parts.scheme == "http" and tls.given:
        raise TopError(USAGE, "--cacert, --insecure, --cert and --key need an https:// URL")
    authorization = None
    if name is not None and secret is not None:
        authorization = "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()
    context = tls_context(tls) if parts.scheme == "https" else None
    return Endpoint(clean_url(parts), authorization, name, context, timeout)


def clean_url(parts: SplitResult) -> str:
    """The URL without credentials, with ``/metrics`` when it names no path."""
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else f"{host}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path or '/metrics'}{query}"


def tls_context(tls: TlsOptions) -> ssl.SSLContext:
    """A client context trusting ``cacert`` (else the system's CAs), or nothing with ``insecure``."""
    try:
        context = ssl.create_default_context(cafile=tls.cacert)
        if tls.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.cert:
            context.load_cert_chain(tls.cert, tls.key)
        elif tls.key:
            raise TopError(USAGE, "--key needs --cert")
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError for a file that is not PEM, or a key that does not match
        files = ", ".join(f"{option} {path}" for option, path in tls.files())
        raise TopError(USAGE, f"cannot load {files}: {exc.strerror or exc}") from None
    return context


def fetch(target: Endpoint) -> str:
    """The body of one GET of ``target``; TopError with a one-line message on any failure."""
    try:
        status, reason, body = _get(target)
    except ssl.SSLCertVerificationError as exc:
        raise TopError(TLS, f"TLS: {target.url}: {exc.verify_message} (trust it with --cacert FILE)") from None
    except ssl.SSLError as exc:
        raise TopError(TLS, f"TLS handshake with {target.url} failed: {exc.reason or exc}") from None
    except (http.client.RemoteDisconnected, ConnectionResetError):
        hint = " (an HTTPS endpoint? use https://)" if target.context is None else ""
        raise TopError(UNREACHABLE, f"cannot reach {target.url}: connection closed without an answer{hint}") from None
    except http.client.HTTPException as exc:
        raise TopError(NOT_OTEL_GUNICORN, f"{target.url} did not answer HTTP ({type(exc).__name__})") from None
    except OSError as exc:
        raise TopError(UNREACHABLE, f"cannot reach {target.url}: {_why(exc, target.timeout)}") from None
    if status in (401, 403):
        raise TopError(CREDENTIALS, _credentials_message(target, status, reason))
    if status != 200:
        raise TopError(NOT_OTEL_GUNICORN, f"{target.url} answered HTTP {status} {reason}: not a metrics endpoint")
    return body.decode("utf-8", errors="replace")


def _get(target: Endpoint) -> tuple[int, str, bytes]:
    parts = urlsplit(target.url)
    host, port = parts.hostname or "localhost", parts.port
    conn: http.client.HTTPConnection
    if target.context is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=target.timeout, context=target.context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=target.timeout)
    headers = {"Accept": ACCEPT, **({"Authorization": target.authorization} if target.authorization else {})}
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = conn.getresponse()
        return response.status, response.reason, response.read()
    finally:
        conn.close()


def _why(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})"
    return exc.strerror or str(exc) or type(exc).__name__


def _credentials_message(target: Endpoint, status: int, reason: str) -> str:
    if target.authorization is None:
        return (
            f"{target.url} answered {status} {reason}: credentials are needed "
            "(--user NAME with --password-file FILE or OTEL_GUNICORN_TOP_PASSWORD, or user:pass@ in the URL)"
        )
    return f"{target.url} answered {status} {reason}: the credentials of user {target.user!r} were rejected"
