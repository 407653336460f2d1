"""HTTPS for the arbiter's Prometheus endpoint: the ``SSLContext`` a web-config asks for, and the server using it.

Runs in the arbiter (gunicorn master) only. :func:`ssl_context` is called twice on the main thread before any fork:
through :func:`check_certificates` from ``runtime.check_config`` in ``on_starting`` (so a certificate and key that
are not a pair stop gunicorn with one line), and when the endpoint is built. :class:`TLSThreadingWSGIServer` serves
from the endpoint's thread.

Hazards:

* the serving thread must never block on one client: the listening socket is wrapped with
  ``do_handshake_on_connect=False`` so ``accept()`` does no TLS I/O, and the handshake happens with a timeout in the
  connection's own thread; a client that connects and sends nothing holds one thread for at most
  :data:`HANDSHAKE_TIMEOUT` seconds;
* an encrypted private key would make OpenSSL prompt for a passphrase on the terminal and hang the arbiter: it is
  refused instead;
* the file is read once: a renewed certificate needs a gunicorn restart (exporter-toolkit re-reads per connection).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from prometheus_client.exposition import ThreadingWSGIServer

from otel_gunicorn._config import web_config_error
from otel_gunicorn._webconfig import CLIENT_AUTH_TYPES, WebConfig, WebConfigError

#: seconds a connection may take to complete its TLS handshake before it is dropped
HANDSHAKE_TIMEOUT = 10.0


def check_certificates(web: WebConfig | None, environ: Mapping[str, str]) -> None:
    """Load ``web``'s certificate, key and client CA once, or raise the :class:`ConfigError` naming the variable.

    For ``runtime.check_config``: ``Config.from_env`` only parses the file (it must not import the arbiter side), so
    this is where a certificate and key that are not a pair stop gunicorn, before any fork rather than at the first
    scrape. ``environ`` is the mapping the configuration was read from, for the variable's value in the message.
    """
    if web is None:
        return
    try:
        ssl_context(web)
    except WebConfigError as exc:
        raise web_config_error(environ, exc) from None


def ssl_context(web: WebConfig) -> ssl.SSLContext | None:
    """A server ``SSLContext`` for ``web.tls`` (``None`` when the file asks for no TLS).

    Loads the certificate, key and client CA, so a wrong or mismatched file raises :class:`WebConfigError` here:
    call it while checking the configuration, before any fork.
    """
    tls = web.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Python warns (DeprecationWarning) when TLS10/TLS11 is set; OpenSSL's default security level usually refuses
    # those versions anyway, which fails closed.
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    if not tls.prefer_server_cipher_suites:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        # The callback refuses encrypted keys: without it OpenSSL would prompt for a passphrase on the terminal
        # and hang the arbiter (or read the prompt answer from whatever stdin gunicorn has).
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_no_passphrase)
    except (OSError, _EncryptedKey) as exc:
        accepted = "a PEM certificate (chain) and its unencrypted PEM private key"
        problem = "cannot be loaded" + (f" ({exc.strerror or exc})" if isinstance(exc, OSError) else " (encrypted)")
        raise WebConfigError("tls_server_config.cert_file/key_file", accepted=accepted, problem=problem) from None
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if tls.client_ca_file is not None and context.verify_mode != ssl.CERT_NONE:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except OSError as exc:
            raise WebConfigError(
                "tls_server_config.client_ca_file", tls.client_ca_file, f"a PEM file of CA certificates ({exc})"
            ) from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    raise _EncryptedKey


class TLSThreadingWSGIServer(ThreadingWSGIServer):
    """prometheus_client's threading WSGI server, serving TLS when :attr:`ssl_context` is set (a class attribute).

    The listening socket is wrapped after ``listen()`` with ``do_handshake_on_connect=False``, so the serving
    thread's ``accept()`` never waits for a client; each connection's handshake runs in its own thread with
    :attr:`handshake_timeout`. A failed handshake (plain HTTP, a port scan, a wrong client certificate, silence) closes
    the connection without a response and counts in :attr:`handshake_failures`; it is not logged, since anything that
    can reach the port could otherwise fill the log.
    """

    ssl_context: ssl.SSLContext | None = None
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    handshake_failures = 0

    def server_activate(self) -> None:
        super().server_activate()
        if self.ssl_context is not None:
            self.socket = self.ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's thread (ThreadingMixIn.process_request_thread), which closes the socket after.
        if isinstance(request, ssl.SSLSocket):
            request.settimeout(self.handshake_timeout)
            try:
                request.do_handshake()
            except (OSError, ValueError):  # ssl.SSLError and TimeoutError are OSErrors
                self.handshake_failures += 1  # a lost increment under a race only undercounts a diagnostic
                return
        super().finish_request(request, client_address)
