"""HTTP basic authentication and extra response headers for the arbiter's Prometheus endpoint, as WSGI middlewares.

Runs in the arbiter (gunicorn master) only: built on the main thread with the endpoint, before any fork; called from
the endpoint's per-connection threads. :func:`secure_app` applies what a web-config asks for: :func:`basic_auth`
(its ``basic_auth_users``) and :func:`with_headers` (its ``http_server_config.headers``).

Hazards:

* secrets: passwords and bcrypt hashes are never logged and never put in an exception message; the ``Authorization``
  header is removed from the environ before the wrapped application sees it;
* bcrypt is imported when a middleware with users is built, on the main thread, never in a connection thread (an
  import in progress on another thread at fork time leaves its module lock held forever in the child,
  docs/failure-modes.md#fork-safety); a server without a web-config never loads it;
* bcrypt costs ~100 ms of CPU per check by design: checks run one at a time (a flood of wrong passwords uses one
  core of the master, not all), never under the runtime lock (which every fork waits for: the middleware wraps the
  locked application from outside), and successful checks are cached (see :class:`_SuccessCache` for the trade-off);
* fork: the two locks here may be inherited held by a worker; workers never use the endpoint, so that is harmless.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from otel_gunicorn._webconfig import WebConfig

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: distinct successful (user, password) checks remembered; a scraper needs one, a few scrapers a few
AUTH_CACHE_SIZE = 32


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
        # Here, on the thread building the endpoint, not at the first request: see the module docstring.
        import bcrypt

        self._bcrypt = bcrypt  # checkpw looked up per call, so a test can count calls by patching the module
        self._users = dict(users)
        # An unknown user is checked against a real hash of the highest cost and then refused, so the time taken does
        # not tell which user names exist (exporter-toolkit does the same with a fixed hash).
        self._decoy = max(self._users.values(), key=lambda h: h[4:6], default=None)
        self._one_at_a_time = threading.Lock()
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
        with self._one_at_a_time:
            try:
                ok = self._bcrypt.checkpw(password[:72], reference)
            except ValueError:  # a malformed hash given to basic_auth directly (the parser admits none)
                ok = False
        if ok and hashed is not None:
            self.cache.add(key)
            return True
        return False
