"""TLS and basic authentication for the arbiter's Prometheus endpoint, from an exporter-toolkit web-config file.

``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG`` names a file in the format Prometheus' own exporters take with
``--web.config.file`` (https://prometheus.io/docs/prometheus/latest/configuration/https/). This module has three
parts, each usable alone:

* :func:`parse_web_config` (pure, but for checking that the named files exist) and :func:`load_web_config` turn the
  file into a frozen :class:`WebConfig` or raise :class:`WebConfigError`; :func:`ssl_context` turns its TLS part into
  a server ``SSLContext`` (and is where certificate and key contents are checked);
* :func:`basic_auth` and :func:`with_headers` are WSGI middlewares (:func:`secure_app` applies both);
* :class:`TLSThreadingWSGIServer` serves HTTPS with the TLS handshake done in the per-connection thread.

Runs in the arbiter (gunicorn master) only: the file is read once, before the first worker forks, so a bad file
stops gunicorn with one line; unlike exporter-toolkit it is not re-read per connection, so a renewed certificate
needs a gunicorn restart.

Hazards:

* secrets: passwords and bcrypt hashes are never logged, never put in an exception message and never shown in a
  ``repr``; the ``Authorization`` header is removed from the environ before the wrapped application sees it;
* the serving thread must never block on one client: the listening socket is wrapped with
  ``do_handshake_on_connect=False`` so ``accept()`` does no TLS I/O, and the handshake happens with a timeout in the
  connection's own thread; a client that connects and sends nothing holds one thread for at most
  :data:`HANDSHAKE_TIMEOUT` seconds;
* bcrypt costs ~100 ms of CPU per check by design: checks run one at a time (a flood of wrong passwords uses one
  core of the master, not all), never under the runtime lock (which every fork waits for), and successful checks
  are cached (see :class:`_SuccessCache` for the trade-off);
* fork: the two locks here may be inherited held by a worker; workers never use the endpoint, so that is harmless.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import bcrypt
import yaml
from prometheus_client.exposition import ThreadingWSGIServer

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: seconds a connection may take to complete its TLS handshake before it is dropped
HANDSHAKE_TIMEOUT = 10.0
#: distinct successful (user, password) checks remembered; a scraper needs one, a few scrapers a few
AUTH_CACHE_SIZE = 32

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's crypto/tls ClientAuthType names, as exporter-toolkit accepts them, mapped to what OpenSSL can do from Python.
# Python's ssl has no verify callback, so "ask for / require a certificate but do not verify it" cannot be built:
# * RequestClientCert grants access whether or not a certificate comes and nothing here reads it, so not asking
#   (CERT_NONE) admits exactly the same clients;
# * RequireAnyClientCert (and its old alias RequireClientCert) becomes "require and verify against client_ca_file":
#   still no access without a certificate, but an unverifiable one is refused rather than accepted (fails closed).
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "RequireClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_NEEDS_CLIENT_CA = frozenset(name for name, mode in CLIENT_AUTH_TYPES.items() if mode != ssl.CERT_NONE)

# exporter-toolkit only lets these response headers be set, some only to fixed values (web/handler.go).
EXTRA_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth_type",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
_HTTP_KEYS = ("headers", "http2")
# Valid in exporter-toolkit but not implemented here: refused by name rather than ignored, because ignoring a
# security setting (client_allowed_sans, rate_limit) would silently serve more than the file allows.
_UNSUPPORTED = {
    "rate_limit": "",
    "tls_server_config.cert": "use cert_file",
    "tls_server_config.key": "use key_file",
    "tls_server_config.client_ca": "use client_ca_file",
    "tls_server_config.cipher_suites": "Python's ssl names cipher suites differently and cannot restrict TLS 1.3 ones",
    "tls_server_config.curve_preferences": "",
    "tls_server_config.client_allowed_sans": "",
}

_BCRYPT_HASH = re.compile(rb"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_ACCEPTED = (
    # htpasswd prompts for the password: one given with -b would sit in the shell history and the process list.
    "a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31, 60 characters), e.g. from `htpasswd -nBC 10 '' | tr -d ':\\n'`"
)
_HIDDEN = object()


class WebConfigError(ValueError):
    """The web-config file cannot be used; the message names the key, the value (unless secret) and what is accepted.

    Args:
        key: dotted path of the offending key, e.g. ``tls_server_config.min_version``.
        value: the value found; left out of the message when not given (a secret, or a missing key).
        accepted: what would be accepted instead.
        problem: what is wrong, ``is not valid`` by default.
    """

    def __init__(self, key: str, value: object = _HIDDEN, accepted: str = "", *, problem: str = "is not valid") -> None:
        shown = "" if value is _HIDDEN else f"={value!r}"
        super().__init__(f"{key}{shown} {problem}: expected {accepted}")
        self.key = key
        self.value = None if value is _HIDDEN else value
        self.accepted = accepted


@dataclasses.dataclass(frozen=True)
class TLSSettings:
    """The ``tls_server_config`` section, with every path absolute."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    prefer_server_cipher_suites: bool = True


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """A parsed web-config file. ``users`` maps a user name to its bcrypt hash; ``headers`` are added to responses.

    The dicts are left out of ``hash()`` (a Config holding this stays hashable) and ``users`` out of ``repr()`` (a
    logged Config shows no hash).
    """

    tls: TLSSettings | None = None
    users: dict[str, bytes] = dataclasses.field(default_factory=dict, hash=False, repr=False)
    headers: dict[str, str] = dataclasses.field(default_factory=dict, hash=False)


# ------------------------------------------------------------------------------------------------ parsing


def load_web_config(path: str) -> WebConfig:
    """Read and parse the web-config file at ``path``; relative paths in it are relative to its directory."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise WebConfigError("web-config file", path, f"a readable UTF-8 file ({reason})") from None
    return parse_web_config(text, os.path.dirname(os.path.abspath(path)))


def parse_web_config(text: str, base_dir: str) -> WebConfig:
    """Parse web-config YAML ``text``; relative file paths are joined to ``base_dir`` and must name existing files.

    Strict like exporter-toolkit's ``yaml.UnmarshalStrict``: unknown and duplicate keys are errors.
    """
    document = _load_yaml(text)
    top = _mapping("web-config", document, _TOP_KEYS)
    tls_section = _mapping("tls_server_config", top.get("tls_server_config"), _TLS_KEYS)
    http_section = _mapping("http_server_config", top.get("http_server_config"), _HTTP_KEYS)
    http2 = http_section.get("http2", True)
    if not isinstance(http2, bool):
        # Accepted for compatibility and otherwise unused: the endpoint speaks HTTP/1.1 only.
        raise WebConfigError("http_server_config.http2", http2, "true or false")
    return WebConfig(
        tls=_tls(tls_section, base_dir),
        users=_users(top.get("basic_auth_users")),
        headers=_headers(http_section.get("headers")),
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader refusing duplicate keys, which PyYAML would otherwise resolve silently to the last one."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                where = f"key {key!r} on line {key_node.start_mark.line + 1}"
                raise WebConfigError(where, accepted="each key once per mapping", problem="is duplicated")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: PyYAML's full message quotes the offending line, which may hold a hash.
        mark = exc.problem_mark
        where = f"web-config line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "web-config"
        raise WebConfigError(where, accepted="valid YAML", problem=f"is not valid YAML ({exc.problem})") from None
    except yaml.YAMLError:
        raise WebConfigError("web-config", accepted="valid YAML", problem="is not valid YAML") from None


def _mapping(path: str, value: Any, known: tuple[str, ...] | None, accepted: str = "") -> dict[Any, Any]:
    """A section as a dict (of ``known`` keys, when given); ``None`` (empty or absent) is an empty section."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problem = f"is a {type(value).__name__}, not a mapping"
        raise WebConfigError(path, accepted=accepted or f"a mapping of {', '.join(known or ())}", problem=problem)
    if known is None:
        return value
    for key in value:
        full = key if path == "web-config" else f"{path}.{key}"
        if full in _UNSUPPORTED:
            hint = _UNSUPPORTED[full]
            accepted = f"one of {', '.join(known)}" + (f" ({hint})" if hint else "")
            raise WebConfigError(full, accepted=accepted, problem="is not supported by otel_gunicorn")
        if key not in known:
            raise WebConfigError(full, accepted=f"one of {', '.join(known)}", problem="is not a known key")
    return value


def _tls(section: dict[str, Any], base_dir: str) -> TLSSettings | None:
    keys = ("cert_file", "key_file", "client_ca_file", "client_auth_type")
    strings = {key: _string(f"tls_server_config.{key}", section.get(key)) for key in keys}
    # exporter-toolkit's TLSConfig.IsEnabled: any of these set means "serve TLS", so the pair must be complete.
    if not any(strings.values()):
        return None
    for key, other in (("cert_file", "key_file"), ("key_file", "cert_file")):
        if not strings[key]:
            accepted = f"a file path beside {other} (both are needed to serve TLS)"
            raise WebConfigError(f"tls_server_config.{key}", accepted=accepted, problem="is missing")
    auth = strings["client_auth_type"] or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError("tls_server_config.client_auth_type", auth, f"one of {', '.join(CLIENT_AUTH_TYPES)}")
    client_ca = strings["client_ca_file"]
    if client_ca and auth == "NoClientCert":
        # As exporter-toolkit: a CA file with no client authentication is a mistake, not a wish to trust nobody.
        accepted = "a client_auth_type other than NoClientCert when client_ca_file is set"
        raise WebConfigError("tls_server_config.client_auth_type", auth, accepted)
    if not client_ca and auth in _NEEDS_CLIENT_CA:
        # Go would fall back to the system roots; verifying client certificates against every public CA admits
        # anyone who can buy a certificate, so a CA file is required instead.
        accepted = f"a CA file to verify client certificates against (client_auth_type is {auth})"
        raise WebConfigError("tls_server_config.client_ca_file", accepted=accepted, problem="is missing")
    low = _version("min_version", section.get("min_version"), ssl.TLSVersion.TLSv1_2)
    high = _version("max_version", section.get("max_version"), ssl.TLSVersion.TLSv1_3)
    if low > high:
        name = {v: k for k, v in TLS_VERSIONS.items()}
        raise WebConfigError("tls_server_config.max_version", name[high], f"at least min_version ({name[low]})")
    prefer = section.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites", prefer, "true or false")
    return TLSSettings(
        cert_file=_file("cert_file", strings["cert_file"], base_dir),
        key_file=_file("key_file", strings["key_file"], base_dir),
        client_ca_file=_file("client_ca_file", client_ca, base_dir) if client_ca else None,
        client_auth_type=auth,
        min_version=low,
        max_version=high,
        prefer_server_cipher_suites=prefer,
    )


def _string(path: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(path, value, "a string")
    return value.strip()


def _version(key: str, value: Any, default: ssl.TLSVersion) -> ssl.TLSVersion:
    if value is None:
        return default
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        raise WebConfigError(f"tls_server_config.{key}", value, f"one of {', '.join(TLS_VERSIONS)}")
    return TLS_VERSIONS[value]


def _file(key: str, value: str, base_dir: str) -> str:
    # Absolute now, like exporter-toolkit's SetDirectory: gunicorn may change directory (--chdir) afterwards.
    path = os.path.abspath(os.path.join(base_dir, value))
    if not os.path.isfile(path):
        accepted = f"an existing file (found nothing at {path}; relative paths start from {base_dir})"
        raise WebConfigError(f"tls_server_config.{key}", value, accepted)
    return path


def _users(section: Any) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for name, hashed in _mapping("basic_auth_users", section, None, "a mapping of user name to bcrypt hash").items():
        # YAML 1.1 reads `yes:`, `on:` or `1234:` as a bool or a number, which is not the name the scraper sends.
        if not isinstance(name, str) or not name:
            raise WebConfigError("basic_auth_users", name, "user names as non-empty strings (quote them in YAML)")
        if ":" in name:
            # RFC 7617: the user-id cannot contain a colon, it separates user from password.
            raise WebConfigError("basic_auth_users", name, "user names without ':'")
        raw = hashed.encode("ascii", "replace") if isinstance(hashed, str) else b""
        if not _BCRYPT_HASH.fullmatch(raw):
            # The value is never shown: a plain password typed here by mistake must not reach a log.
            raise WebConfigError(f"basic_auth_users.{name}", accepted=_BCRYPT_ACCEPTED, problem="is not a bcrypt hash")
        users[name] = raw
    return users


def _headers(section: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in _mapping("http_server_config.headers", section, None, "a mapping of header to value").items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError("http_server_config.headers", name, f"one of {', '.join(EXTRA_HEADERS)}")
        allowed = EXTRA_HEADERS[name]
        if not isinstance(value, str) or (allowed and value not in allowed) or not value.isprintable():
            accepted = f"one of {', '.join(allowed)}" if allowed else "a single-line string"
            raise WebConfigError(f"http_server_config.headers.{name}", value, accepted)
        headers[name] = value
    return headers


# ------------------------------------------------------------------------------------------------ TLS


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


# ------------------------------------------------------------------------------------------------ WSGI middlewares


def secure_app(app: WSGIApp, web: WebConfig, realm: str = "otel_gunicorn") -> WSGIApp:
    """``app`` behind the file's basic authentication (when it has users) and with its extra headers (when any)."""
    if web.users:
        app = basic_auth(app, web.users, realm)
    if web.headers:
        # Outermost, so a 401 carries the headers too (exporter-toolkit sets them before checking credentials).
        app = with_headers(app, web.headers)
    return app


def with_headers(app: WSGIApp, headers: Mapping[str, str]) -> WSGIApp:
    """Add ``headers`` to every response of ``app``, replacing a same-named header it set."""
    extra = list(headers.items())
    names = {name.lower() for name in headers}

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in response_headers if k.lower() not in names]
            return start_response(status, kept + extra, exc_info)

        return app(environ, start)

    return wrapped


def basic_auth(
    app: WSGIApp, users: Mapping[str, bytes], realm: str = "otel_gunicorn", cache_size: int = AUTH_CACHE_SIZE
) -> WSGIApp:
    """Let a request through to ``app`` only with HTTP basic credentials matching ``users`` (name → bcrypt hash).

    Anything else (no header, another scheme, bad base64, unknown user, wrong password) gets ``401`` with
    ``WWW-Authenticate: Basic realm="<realm>"``. The ``Authorization`` header is removed from the environ passed on
    and ``REMOTE_USER`` set.
    """
    if not realm.isprintable() or '"' in realm or "\\" in realm:
        raise ValueError("realm must be printable, without quotes or backslashes")
    checker = _Checker(users, cache_size)
    challenge = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),
    ]

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        credentials = _credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if credentials is None or not checker.check(*credentials):
            body = b"Unauthorized\n"
            start_response("401 Unauthorized", [*challenge, ("Content-Length", str(len(body)))])
            return [body]
        inner = {k: v for k, v in environ.items() if k != "HTTP_AUTHORIZATION"}
        inner["REMOTE_USER"] = credentials[0]
        return app(inner, start_response)

    wrapped.auth_cache = checker.cache  # type: ignore[attr-defined]  # for tests and diagnostics
    return wrapped


def _credentials(header: str) -> tuple[str, bytes] | None:
    """``(user, password)`` from an ``Authorization: Basic`` header value, or ``None`` when it is not one."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        user, colon, password = decoded.partition(b":")
        name = user.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return (name, password) if colon else None


class _SuccessCache:
    """A bounded LRU of (user, password) pairs that passed bcrypt, keyed by an HMAC of the pair.

    Trade-off: bcrypt is slow on purpose (~100 ms at cost 10) and a scraper sends the same credentials every few
    seconds, forever; without the cache the master would spend a core-second every ~10 scrapes. The price: while a
    pair is remembered, its password is confirmed by a fast HMAC instead of bcrypt. Only successes are stored, so
    guessing gains nothing (every wrong password pays bcrypt) and a flood of wrong passwords cannot evict a
    scraper's entry; more than ``size`` distinct correct pairs can, and then the scraper pays bcrypt once more. The
    key is an HMAC-SHA256 under a random per-process secret, so memory holds neither a password nor a digest that a
    precomputed table could reverse (whoever can read the arbiter's memory can read the passwords in flight anyway).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._secret = secrets.token_bytes(32)
        self._entries: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def key(self, user: str, password: bytes) -> bytes:
        # The user name cannot contain ":" (it ends at the first one), so the pair is encoded unambiguously.
        return hmac.new(self._secret, user.encode("utf-8") + b":" + password, hashlib.sha256).digest()

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._entries.move_to_end(key)
            return True

    def add(self, key: bytes) -> None:
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class _Checker:
    def __init__(self, users: Mapping[str, bytes], cache_size: int) -> None:
        self._users = dict(users)
        # An unknown user is checked against a real hash of the highest cost and then refused, so the time taken does
        # not tell which user names exist (exporter-toolkit does the same with a fixed hash).
        self._decoy = max(self._users.values(), key=lambda h: h[4:6], default=None)
        self._bcrypt = threading.Lock()
        self.cache = _SuccessCache(cache_size)

    def check(self, user: str, password: bytes) -> bool:
        hashed = self._users.get(user)
        reference = hashed if hashed is not None else self._decoy
        if reference is None:
            return False
        key = self.cache.key(user, password)
        if hashed is not None and key in self.cache:
            return True
        # bcrypt only looks at 72 bytes (htpasswd and Go truncate the same way); bcrypt>=5 raises instead of
        # truncating, which would turn a long but correct password into an error.
        with self._bcrypt:
            try:
                ok = bcrypt.checkpw(password[:72], reference)
            except ValueError:  # a malformed hash given to basic_auth directly (the parser admits none)
                ok = False
        if ok and hashed is not None:
            self.cache.add(key)
            return True
        return False
