"""The Prometheus web-config file (exporter-toolkit format) parsed into a frozen :class:`WebConfig`.

``OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG`` names a file in the format Prometheus' own exporters take with
``--web.config.file`` (https://prometheus.io/docs/prometheus/latest/configuration/https/). Three steps, each usable
alone: :func:`load_web_config` reads the file, :func:`parse_yaml` turns its text into plain Python data, and
:func:`web_config_from_data` (the core) checks that data against :data:`SCHEMA`, one row per key, and builds the
:class:`WebConfig`. The TLS server and the basic-auth middleware that use it live with the endpoint, in
``_arbiter/tls.py`` and ``_arbiter/basic_auth.py``.

Runs in the arbiter, from ``Config.from_env`` in ``on_starting``, before any fork; imports neither process side, so it
loads anywhere. One piece (~400 lines, half of it the schema's rows and their messages): the schema and its checker
read together. Unlike exporter-toolkit the file is not re-read per connection: a renewed certificate needs a gunicorn
restart.

Hazards:

* secrets: bcrypt hashes (or a password pasted where a hash belongs) and inline keys are never put in an exception
  message and never shown in a ``repr``; a YAML error names a position, never the offending line;
* PyYAML is imported by :func:`parse_yaml` only, so a server without a web-config never loads it; that happens on the
  arbiter's main thread while no other thread imports (an import in progress on another thread at fork time would
  leave its module lock held forever in the child, docs/failure-modes.md#fork-safety);
* the core's only I/O is a ``stat`` of each file the TLS section names, so a typo stops gunicorn before any fork.
  Loading the certificate and key (the check that they are a pair) is the TLS server's job: ``_arbiter/tls.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import ssl
from collections.abc import Callable, Mapping
from typing import Any

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


# ------------------------------------------------------------------------------------------------ the schema


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of the file: the section it sits in, how its value is checked, its default and its allowed values.

    Args:
        section: the top-level section holding the key, ``""`` for a top-level key.
        name: the key's name within its section.
        check: turns a present, non-null value into the parsed one or raises :class:`WebConfigError`; ``None`` marks
            a key exporter-toolkit accepts that otel_gunicorn refuses by name.
        default: the parsed value when the key is absent or null.
        allowed: the accepted values, for keys checked by :func:`_choice`.
        hint: for a refused key, what to use instead.
    """

    section: str
    name: str
    check: Callable[[Key, Any], Any] | None
    default: Any = None
    allowed: tuple[str, ...] = ()
    hint: str = ""

    @property
    def path(self) -> str:
        """The dotted path error messages name, e.g. ``tls_server_config.min_version``."""
        return f"{self.section}.{self.name}" if self.section else self.name


def _string(key: Key, value: Any) -> str:
    if not isinstance(value, str):
        raise WebConfigError(key.path, value, "a string")
    return value.strip()


def _choice(key: Key, value: Any) -> str:
    if isinstance(value, str) and not value.strip():
        return str(key.default)  # blank is unset, as exporter-toolkit reads an empty client_auth_type
    if not isinstance(value, str) or value not in key.allowed:
        raise WebConfigError(key.path, value, f"one of {', '.join(key.allowed)}")
    return value


def _bool(key: Key, value: Any) -> bool:
    if not isinstance(value, bool):
        raise WebConfigError(key.path, value, "true or false")
    return value


def _users(key: Key, value: Any) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for name, hashed in _dict_at(key.path, value, "a mapping of user name to bcrypt hash").items():
        # YAML 1.1 reads `yes:`, `on:` or `1234:` as a bool or a number, which is not the name the scraper sends.
        if not isinstance(name, str) or not name:
            raise WebConfigError(key.path, name, "user names as non-empty strings (quote them in YAML)")
        if ":" in name:
            # RFC 7617: the user-id cannot contain a colon, it separates user from password.
            raise WebConfigError(key.path, name, "user names without ':'")
        raw = hashed.encode("ascii", "replace") if isinstance(hashed, str) else b""
        if not _BCRYPT_HASH.fullmatch(raw):
            # The value is never shown: a plain password typed here by mistake must not reach a log.
            raise WebConfigError(f"{key.path}.{name}", accepted=_BCRYPT_ACCEPTED, problem="is not a bcrypt hash")
        users[name] = raw
    return users


def _headers(key: Key, value: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, text in _dict_at(key.path, value, "a mapping of header to value").items():
        if name not in EXTRA_HEADERS:
            raise WebConfigError(key.path, name, f"one of {', '.join(EXTRA_HEADERS)}")
        allowed = EXTRA_HEADERS[name]
        if not isinstance(text, str) or (allowed and text not in allowed) or not text.isprintable():
            accepted = f"one of {', '.join(allowed)}" if allowed else "a single-line string"
            raise WebConfigError(f"{key.path}.{name}", text, accepted)
        headers[name] = text
    return headers


_TLS = "tls_server_config"
_HTTP = "http_server_config"

#: Every key of the file, in the order error messages list them. The walk checks each present key with its ``check``;
#: rules between keys (a certificate needs its key, ...) are in :func:`_tls`.
SCHEMA: tuple[Key, ...] = (
    # Blank strings count as unset: exporter-toolkit's TLSConfig.IsEnabled treats "" as "not given".
    Key(_TLS, "cert_file", _string, ""),
    Key(_TLS, "key_file", _string, ""),
    Key(_TLS, "client_ca_file", _string, ""),
    # "" (not given) rather than NoClientCert: giving it at all turns TLS on, as in exporter-toolkit.
    Key(_TLS, "client_auth_type", _choice, "", tuple(CLIENT_AUTH_TYPES)),
    Key(_TLS, "min_version", _choice, "TLS12", tuple(TLS_VERSIONS)),
    Key(_TLS, "max_version", _choice, "TLS13", tuple(TLS_VERSIONS)),
    Key(_TLS, "prefer_server_cipher_suites", _bool, True),
    Key(_HTTP, "headers", _headers, {}),
    # Accepted for compatibility and otherwise unused: the endpoint speaks HTTP/1.1 only.
    Key(_HTTP, "http2", _bool, True),
    Key("", "basic_auth_users", _users, {}),
    # Valid in exporter-toolkit but not implemented here: refused by name rather than ignored, because ignoring a
    # security setting (client_allowed_sans, rate_limit) would silently serve more than the file allows.
    Key("", "rate_limit", None),
    Key(_TLS, "cert", None, hint="use cert_file"),
    Key(_TLS, "key", None, hint="use key_file"),
    Key(_TLS, "client_ca", None, hint="use client_ca_file"),
    Key(
        _TLS,
        "cipher_suites",
        None,
        hint="Python's ssl names cipher suites differently and cannot restrict TLS 1.3 ones",
    ),
    Key(_TLS, "curve_preferences", None),
    Key(_TLS, "client_allowed_sans", None),
)

_SECTIONS = tuple(dict.fromkeys(key.section for key in SCHEMA if key.section))
# Known names per section; the top level knows its sections and its own keys, in schema order.
_KNOWN: Mapping[str, tuple[str, ...]] = {
    "": tuple(dict.fromkeys(key.section or key.name for key in SCHEMA if key.check is not None)),
    **{section: tuple(k.name for k in SCHEMA if k.section == section and k.check is not None) for section in _SECTIONS},
}
_REFUSED: Mapping[str, str] = {key.path: key.hint for key in SCHEMA if key.check is None}


# ------------------------------------------------------------------------------------------------ parsing


def load_web_config(path: str) -> WebConfig:
    """Read and parse the web-config file at ``path``; relative paths in it are relative to its directory."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise WebConfigError("web-config file", path, f"a readable UTF-8 file ({reason})") from None
    web = web_config_from_data(parse_yaml(text), os.path.dirname(os.path.abspath(path)))
    if web.tls is None and not web.users:
        # Whoever set the variable wanted a secured endpoint: an empty file (or one with only headers) must not
        # quietly mean plain HTTP without authentication.
        raise WebConfigError(
            "web-config file",
            path,
            "tls_server_config (cert_file and key_file) or basic_auth_users, or both",
            problem="asks for neither TLS nor basic auth",
        )
    return web


def parse_yaml(text: str) -> Any:
    """The YAML document in ``text`` as plain data (``None`` when empty), or :class:`WebConfigError`.

    Strict like exporter-toolkit's ``yaml.UnmarshalStrict``: a duplicate key is an error.
    """
    import yaml  # lazily, see the module docstring

    try:
        return yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        # Only the position and the problem: PyYAML's full message quotes the offending line, which may hold a hash.
        mark = exc.problem_mark
        where = f"web-config line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "web-config"
        raise WebConfigError(where, accepted="valid YAML", problem=f"is not valid YAML ({exc.problem})") from None
    except yaml.YAMLError:
        raise WebConfigError("web-config", accepted="valid YAML", problem="is not valid YAML") from None


@functools.cache
def _strict_loader() -> type:
    """A SafeLoader refusing duplicate keys, which PyYAML would otherwise resolve silently to the last one."""
    import yaml  # lazily, see the module docstring

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    where = f"key {key!r} on line {key_node.start_mark.line + 1}"
                    raise WebConfigError(where, accepted="each key once per mapping", problem="is duplicated")
                seen.add(key)
            mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # PyYAML ships no type information
            return mapping

    return StrictLoader


def web_config_from_data(document: Any, base_dir: str) -> WebConfig:
    """The :class:`WebConfig` a parsed web-config ``document`` describes, or :class:`WebConfigError`.

    Relative file paths are joined to ``base_dir`` and must name existing files. Unknown keys are errors, as with
    exporter-toolkit's ``yaml.UnmarshalStrict``; ``None`` (an empty document) asks for nothing.
    """
    values = _walk(document)
    return WebConfig(
        tls=_tls(values, base_dir),
        users=dict(values["basic_auth_users"]),
        headers=dict(values[f"{_HTTP}.headers"]),
    )


def _walk(document: Any) -> dict[str, Any]:
    """Every supported key's parsed value (its default when absent or null), by dotted path."""
    sections = {"": _section("", document)}
    for name in _SECTIONS:
        sections[name] = _section(name, sections[""].get(name))
    values: dict[str, Any] = {}
    for key in SCHEMA:
        if key.check is not None:
            raw = sections[key.section].get(key.name)
            values[key.path] = key.default if raw is None else key.check(key, raw)
    return values


def _section(name: str, value: Any) -> dict[Any, Any]:
    """A section (``""``: the whole document) as a dict of known keys; refused and unknown keys are errors."""
    known = _KNOWN[name]
    section = _dict_at(name or "web-config", value, f"a mapping of {', '.join(known)}")
    for key in section:
        path = f"{name}.{key}" if name else key
        if path in _REFUSED:
            hint = _REFUSED[path]
            accepted = f"one of {', '.join(known)}" + (f" ({hint})" if hint else "")
            raise WebConfigError(path, accepted=accepted, problem="is not supported by otel_gunicorn")
        if key not in known:
            raise WebConfigError(path, accepted=f"one of {', '.join(known)}", problem="is not a known key")
    return section


def _dict_at(path: str, value: Any, accepted: str) -> dict[Any, Any]:
    """``value`` if it is a mapping; ``None`` (an empty or absent section) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(path, accepted=accepted, problem=f"is a {type(value).__name__}, not a mapping")
    return value


# The keys any of which, given, turns TLS on (exporter-toolkit's TLSConfig.IsEnabled).
_TLS_SWITCHES = ("cert_file", "key_file", "client_ca_file", "client_auth_type")


def _tls(values: Mapping[str, Any], base_dir: str) -> TLSSettings | None:
    """The TLS settings from the walked values, checking the rules that join several keys."""
    cert, key, client_ca, auth = (values[f"{_TLS}.{name}"] for name in _TLS_SWITCHES)
    # exporter-toolkit's TLSConfig.IsEnabled: any of these set means "serve TLS", so the pair must be complete.
    if not (cert or key or client_ca or auth):
        return None
    for name, value, other in (("cert_file", cert, "key_file"), ("key_file", key, "cert_file")):
        if not value:
            accepted = f"a file path beside {other} (both are needed to serve TLS)"
            raise WebConfigError(f"{_TLS}.{name}", accepted=accepted, problem="is missing")
    auth = auth or "NoClientCert"
    _check_client_auth(auth, client_ca)
    low, high = values[f"{_TLS}.min_version"], values[f"{_TLS}.max_version"]
    if TLS_VERSIONS[low] > TLS_VERSIONS[high]:
        raise WebConfigError(f"{_TLS}.max_version", high, f"at least min_version ({low})")
    return TLSSettings(
        cert_file=_file("cert_file", cert, base_dir),
        key_file=_file("key_file", key, base_dir),
        client_ca_file=_file("client_ca_file", client_ca, base_dir) if client_ca else None,
        client_auth_type=auth,
        min_version=TLS_VERSIONS[low],
        max_version=TLS_VERSIONS[high],
        prefer_server_cipher_suites=values[f"{_TLS}.prefer_server_cipher_suites"],
    )


def _check_client_auth(auth: str, client_ca: str) -> None:
    if client_ca and auth == "NoClientCert":
        # As exporter-toolkit: a CA file with no client authentication is a mistake, not a wish to trust nobody.
        accepted = "a client_auth_type other than NoClientCert when client_ca_file is set"
        raise WebConfigError(f"{_TLS}.client_auth_type", auth, accepted)
    if not client_ca and auth in _NEEDS_CLIENT_CA:
        # Go would fall back to the system roots; verifying client certificates against every public CA admits
        # anyone who can buy a certificate, so a CA file is required instead.
        accepted = f"a CA file to verify client certificates against (client_auth_type is {auth})"
        raise WebConfigError(f"{_TLS}.client_ca_file", accepted=accepted, problem="is missing")


def _file(key: str, value: str, base_dir: str) -> str:
    # Absolute now, like exporter-toolkit's SetDirectory: gunicorn may change directory (--chdir) afterwards.
    path = os.path.abspath(os.path.join(base_dir, value))
    if not os.path.isfile(path):
        accepted = f"an existing file (found nothing at {path}; relative paths start from {base_dir})"
        raise WebConfigError(f"{_TLS}.{key}", value, accepted)
    return path
