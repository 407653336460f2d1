"""Unit tests for the endpoint's web-config file: parser (_webconfig), SSL context and TLS server (_arbiter/tls),
basic authentication (_arbiter/basic_auth), and the fail-fast check in _arbiter/runtime.check_config.

Certificates are made at test time with the ``openssl`` command (the ``cryptography`` package is not a dependency);
bcrypt hashes at cost 4 to keep the suite fast.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import bcrypt
import pytest

from otel_gunicorn._arbiter import runtime
from otel_gunicorn._arbiter.basic_auth import basic_auth, secure_app, with_headers
from otel_gunicorn._arbiter.tls import TLSThreadingWSGIServer, ssl_context
from otel_gunicorn._config import Config
from otel_gunicorn._webconfig import (
    SCHEMA,
    Key,
    TLSSettings,
    WebConfig,
    WebConfigError,
    load_web_config,
    parse_yaml,
    web_config_from_data,
)

VARIABLE = "OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG"
PASSWORD = b"correct horse"
HASH = bcrypt.hashpw(PASSWORD, bcrypt.gensalt(rounds=4))

# ------------------------------------------------------------------------------------------------ certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _issue(directory: Path, name: str, usage: str) -> None:
    """``name.key`` and ``name.crt`` signed by ``ca`` in ``directory``, for ``usage`` (serverAuth or clientAuth)."""
    ext = directory / f"{name}.ext"
    ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key")
    _openssl("req", *key, "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=directory,
    )  # fmt: skip


def _make_ca(directory: Path) -> None:
    directory.mkdir()
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key")
    _openssl("req", "-x509", *key, "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with ca.crt, server.crt/.key, client.crt/.key (all from ca) and stranger.crt/.key (another CA)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    root = tmp_path_factory.mktemp("pki")
    pki = root / "pki"
    _make_ca(pki)
    _issue(pki, "server", "serverAuth")
    _issue(pki, "client", "clientAuth")
    other = root / "other"
    _make_ca(other)
    _issue(other, "stranger", "clientAuth")
    for suffix in (".crt", ".key"):
        shutil.copy(other / f"stranger{suffix}", pki / f"stranger{suffix}")
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", "pass:x", "-out", "encrypted.key", cwd=pki)
    return pki


def parse(text: str, base_dir: str) -> WebConfig:
    """What the parsing core makes of a document ``text`` in ``base_dir`` (load_web_config adds the file checks)."""
    return web_config_from_data(parse_yaml(text), base_dir)


def tls_yaml(**keys: str) -> str:
    return "tls_server_config:\n" + "".join(f"  {key}: {value}\n" for key, value in keys.items())


# ------------------------------------------------------------------------------------------------ parser


def test_full_config(pki: Path) -> None:
    """Every supported key of a full file lands in the WebConfig, paths made absolute."""
    text = (
        tls_yaml(
            cert_file="server.crt",
            key_file="server.key",
            client_ca_file="ca.crt",
            client_auth_type="RequireAndVerifyClientCert",
            min_version="TLS13",
            max_version="TLS13",
            prefer_server_cipher_suites="false",
        )
        + f"basic_auth_users:\n  alice: '{HASH.decode()}'\n"
        + "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n"
    )
    expected = WebConfig(
        tls=TLSSettings(
            cert_file=str(pki / "server.crt"),
            key_file=str(pki / "server.key"),
            client_ca_file=str(pki / "ca.crt"),
            client_auth_type="RequireAndVerifyClientCert",
            min_version=ssl.TLSVersion.TLSv1_3,
            max_version=ssl.TLSVersion.TLSv1_3,
            prefer_server_cipher_suites=False,
        ),
        users={"alice": HASH},
        headers={"X-Frame-Options": "deny"},
    )
    assert expected == parse(text, str(pki))


def test_tls_defaults(pki: Path) -> None:
    """Without the optional keys: no client certificate, TLS 1.2 to 1.3, server cipher preference."""
    expected = TLSSettings(cert_file=str(pki / "server.crt"), key_file=str(pki / "server.key"))
    assert expected == parse(tls_yaml(cert_file="server.crt", key_file="server.key"), str(pki)).tls


def test_empty_file() -> None:
    """An empty document asks for nothing at the parsing core (load_web_config then refuses such a file)."""
    assert WebConfig() == parse("", "/")


def test_users_only_is_plain_http_with_auth() -> None:
    """basic_auth_users alone gives users and no TLS."""
    web = parse(f"basic_auth_users:\n  alice: {HASH.decode()}\n", "/")
    assert (None, {"alice": HASH}) == (web.tls, web.users)


def test_absolute_paths_kept(pki: Path) -> None:
    """Absolute paths do not depend on the base directory."""
    tls = parse(tls_yaml(cert_file=str(pki / "server.crt"), key_file=str(pki / "server.key")), "/x").tls
    assert tls is not None
    assert (str(pki / "server.crt"), str(pki / "server.key")) == (tls.cert_file, tls.key_file)


def test_load_resolves_paths_relative_to_the_file(pki: Path) -> None:
    """load_web_config resolves relative paths against the file's directory, not the current one."""
    path = pki / "web.yml"
    path.write_text(tls_yaml(cert_file="server.crt", key_file="./server.key"))
    tls = load_web_config(str(path)).tls
    assert tls is not None
    assert str(pki / "server.key") == tls.key_file


def test_load_unreadable_file(tmp_path: Path) -> None:
    """A missing web-config file is a WebConfigError naming it."""
    missing = str(tmp_path / "absent.yml")
    with pytest.raises(WebConfigError) as info:
        load_web_config(missing)
    assert (
        f"web-config file={missing!r} is not valid: expected a readable UTF-8 file (No such file or directory)"
        == str(info.value)
    )


def test_repr_hides_hashes() -> None:
    """A logged WebConfig shows no bcrypt hash."""
    web = parse(f"basic_auth_users:\n  alice: {HASH.decode()}\n", "/")
    assert HASH.decode() not in repr(web)


def test_hashable() -> None:
    """A WebConfig can sit in a frozen, hashable Config."""
    web = parse(f"basic_auth_users:\n  alice: {HASH.decode()}\n", "/")
    assert hash(web) == hash(dataclasses.replace(web))


INVALID = {
    "unknown top-level key": (
        "tls_config:\n  cert_file: x\n",
        "tls_config is not a known key: expected one of tls_server_config, http_server_config, basic_auth_users",
    ),
    "unknown tls key": (
        "tls_server_config:\n  certfile: server.crt\n",
        "tls_server_config.certfile is not a known key: expected one of cert_file, key_file",
    ),
    "unsupported top-level key": ("rate_limit:\n  burst: 1\n", "rate_limit is not supported by otel_gunicorn"),
    "unsupported tls key": (
        "tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        "tls_server_config.cipher_suites is not supported by otel_gunicorn",
    ),
    "inline key": (
        "tls_server_config:\n  key: SECRET-KEY-MATERIAL\n",
        "tls_server_config.key is not supported by otel_gunicorn: expected one of cert_file",
    ),
    "bad client_auth_type": (
        tls_yaml(cert_file="server.crt", key_file="server.key", client_auth_type="VerifyAlways"),
        "tls_server_config.client_auth_type='VerifyAlways' is not valid: expected one of NoClientCert, "
        "RequestClientCert, RequireAnyClientCert, RequireClientCert, VerifyClientCertIfGiven, "
        "RequireAndVerifyClientCert",
    ),
    "bad min_version": (
        tls_yaml(cert_file="server.crt", key_file="server.key", min_version="TLS1.2"),
        "tls_server_config.min_version='TLS1.2' is not valid: expected one of TLS10, TLS11, TLS12, TLS13",
    ),
    "bad max_version": (
        tls_yaml(cert_file="server.crt", key_file="server.key", max_version="SSL3"),
        "tls_server_config.max_version='SSL3' is not valid: expected one of TLS10, TLS11, TLS12, TLS13",
    ),
    "min above max": (
        tls_yaml(cert_file="server.crt", key_file="server.key", min_version="TLS13", max_version="TLS12"),
        "tls_server_config.max_version='TLS12' is not valid: expected at least min_version (TLS13)",
    ),
    "cert without key": (
        tls_yaml(cert_file="server.crt"),
        "tls_server_config.key_file is missing: expected a file path beside cert_file",
    ),
    "key without cert": (
        tls_yaml(key_file="server.key"),
        "tls_server_config.cert_file is missing: expected a file path beside key_file",
    ),
    "client_auth_type alone": (
        tls_yaml(client_auth_type="NoClientCert"),
        "tls_server_config.cert_file is missing",
    ),
    "client CA without client auth": (
        tls_yaml(cert_file="server.crt", key_file="server.key", client_ca_file="ca.crt"),
        "tls_server_config.client_auth_type='NoClientCert' is not valid: expected a client_auth_type other than "
        "NoClientCert when client_ca_file is set",
    ),
    "verification without CA": (
        tls_yaml(cert_file="server.crt", key_file="server.key", client_auth_type="RequireAndVerifyClientCert"),
        "tls_server_config.client_ca_file is missing: expected a CA file to verify client certificates against",
    ),
    "missing file": (
        tls_yaml(cert_file="nope.crt", key_file="server.key"),
        "tls_server_config.cert_file='nope.crt' is not valid: expected an existing file (found nothing at ",
    ),
    "not a bcrypt hash": (
        "basic_auth_users:\n  alice: hunter2\n",
        "basic_auth_users.alice is not a bcrypt hash: expected a bcrypt hash ($2a$, $2b$ or $2y$, cost 04-31",
    ),
    "bcrypt cost out of range": (
        "basic_auth_users:\n  alice: '$2b$03$" + HASH.decode()[7:] + "'\n",
        "basic_auth_users.alice is not a bcrypt hash",
    ),
    "user name read as a bool": (
        f"basic_auth_users:\n  yes: '{HASH.decode()}'\n",
        "basic_auth_users=True is not valid: expected user names as non-empty strings (quote them in YAML)",
    ),
    "user name with a colon": (
        f"basic_auth_users:\n  'a:b': '{HASH.decode()}'\n",
        "basic_auth_users='a:b' is not valid: expected user names without ':'",
    ),
    "header not allowed": (
        "http_server_config:\n  headers:\n    Content-Type: foo\n",
        "http_server_config.headers='Content-Type' is not valid: expected one of Strict-Transport-Security,",
    ),
    "header value not allowed": (
        "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        "http_server_config.headers.X-Frame-Options='allow' is not valid: expected one of deny, sameorigin",
    ),
    "http2 not a bool": ("http_server_config:\n  http2: maybe\n", "http_server_config.http2='maybe' is not valid"),
    "section not a mapping": (
        "tls_server_config: server.crt\n",
        "tls_server_config is a str, not a mapping: expected a mapping of cert_file",
    ),
    "duplicate key": (
        f"basic_auth_users:\n  alice: '{HASH.decode()}'\n  alice: '{HASH.decode()}'\n",
        "key 'alice' on line 3 is duplicated: expected each key once per mapping",
    ),
    "invalid yaml": ("tls_server_config: [\n", "web-config line 2, column 1 is not valid YAML"),
    "document not a mapping": ("- a\n- b\n", "web-config is a list, not a mapping"),
    "users not a mapping": ("basic_auth_users: alice\n", "basic_auth_users is a str, not a mapping"),
}


@pytest.mark.parametrize(("text", "message"), list(INVALID.values()), ids=list(INVALID))
def test_invalid(pki: Path, text: str, message: str) -> None:
    """Each kind of invalid file raises WebConfigError naming the key, the value and what is accepted."""
    with pytest.raises(WebConfigError) as info:
        parse(text, str(pki))
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "basic_auth_users:\n  alice: hunter2\n",
        "tls_server_config:\n  key: hunter2\n",
        "basic_auth_users:\n  alice: [hunter2\n",
    ],
    ids=["plain password as hash", "inline key", "yaml error on a secret line"],
)
def test_error_never_shows_a_secret(text: str) -> None:
    """An error about a value that may be a secret does not repeat it."""
    with pytest.raises(WebConfigError) as info:
        parse(text, "/")
    assert "hunter2" not in str(info.value)


def test_y_hashes_accepted() -> None:
    """Hashes from htpasswd ($2y$) are accepted, as the Prometheus documentation generates them."""
    hashed = b"$2y$" + HASH[4:]
    assert {"alice": hashed} == parse(f"basic_auth_users:\n  alice: '{hashed.decode()}'\n", "/").users


# ------------------------------------------------------------------------------------------------ the schema table

CHECKED = [key for key in SCHEMA if key.check is not None]
REFUSED = [key for key in SCHEMA if key.check is None]
CHOICES = [key for key in SCHEMA if key.allowed]


def document(key: Key, value: Any) -> dict[str, Any]:
    """Parsed file content holding only ``key``, set to ``value``."""
    return {key.section: {key.name: value}} if key.section else {key.name: value}


def test_core_takes_parsed_data() -> None:
    """The core builds a WebConfig from a plain mapping, no YAML involved."""
    data = {
        "basic_auth_users": {"alice": HASH.decode()},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}},
    }
    expected = WebConfig(users={"alice": HASH}, headers={"X-Frame-Options": "deny"})
    assert expected == web_config_from_data(data, "/")


@pytest.mark.parametrize("key", CHECKED, ids=[key.path for key in CHECKED])
def test_null_is_the_default(key: Key) -> None:
    """Every key of the table set to null (left empty in YAML) asks for the same as leaving it out."""
    assert WebConfig() == web_config_from_data(document(key, None), "/")


@pytest.mark.parametrize("key", CHECKED, ids=[key.path for key in CHECKED])
def test_wrong_type_names_the_key(key: Key) -> None:
    """Every key of the table refuses a value of the wrong type with an error naming its dotted path."""
    with pytest.raises(WebConfigError) as info:
        web_config_from_data(document(key, [1]), "/")
    assert key.path == info.value.key


@pytest.mark.parametrize("key", REFUSED, ids=[key.path for key in REFUSED])
def test_refused_keys_refused_by_name(key: Key) -> None:
    """Every key the table marks as refused is an error naming it and its hint, whatever its value."""
    with pytest.raises(WebConfigError) as info:
        web_config_from_data(document(key, "anything"), "/")
    message = str(info.value)
    assert (True, True) == (message.startswith(f"{key.path} is not supported by otel_gunicorn"), key.hint in message)


@pytest.mark.parametrize("key", CHOICES, ids=[key.path for key in CHOICES])
def test_choices_come_from_the_table(key: Key) -> None:
    """A key with allowed values refuses another value, listing the table's values in order."""
    with pytest.raises(WebConfigError) as info:
        web_config_from_data(document(key, "bogus"), "/")
    assert f"{key.path}='bogus' is not valid: expected one of {', '.join(key.allowed)}" == str(info.value)


@pytest.mark.parametrize("section", ["tls_server_config", "http_server_config"])
def test_unknown_key_lists_the_section(section: str) -> None:
    """An unknown key's error lists the section's supported keys, in table order."""
    with pytest.raises(WebConfigError) as info:
        web_config_from_data({section: {"bogus": 1}}, "/")
    names = ", ".join(key.name for key in CHECKED if key.section == section)
    assert f"{section}.bogus is not a known key: expected one of {names}" == str(info.value)


def test_blank_client_auth_type_is_unset() -> None:
    """A blank client_auth_type asks for nothing, as in exporter-toolkit: alone, it does not turn TLS on."""
    assert WebConfig() == web_config_from_data({"tls_server_config": {"client_auth_type": " "}}, "/")


def test_hooks_load_neither_bcrypt_nor_yaml() -> None:
    """Importing the hooks (arbiter runtime and endpoint included) loads neither bcrypt nor PyYAML."""
    code = "import otel_gunicorn.hooks, sys; print([m for m in ('bcrypt', 'yaml') if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "[]" == result.stdout.strip()


# ------------------------------------------------------------------------------------------------ ssl_context


def tls_settings(pki: Path, **changes: Any) -> WebConfig:
    tls = TLSSettings(cert_file=str(pki / "server.crt"), key_file=str(pki / "server.key"))
    return WebConfig(tls=dataclasses.replace(tls, **changes))


def context(web: WebConfig) -> ssl.SSLContext:
    built = ssl_context(web)
    assert built is not None
    return built


def test_no_tls_no_context() -> None:
    """Without tls_server_config there is no SSL context."""
    assert ssl_context(WebConfig()) is None


def test_context_versions(pki: Path) -> None:
    """min_version and max_version bound the context's protocol versions."""
    built = context(tls_settings(pki, min_version=ssl.TLSVersion.TLSv1_3))
    assert (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3) == (built.minimum_version, built.maximum_version)


def test_context_is_server_side(pki: Path) -> None:
    """The context is a server context without hostname checking."""
    built = context(tls_settings(pki))
    assert (ssl.PROTOCOL_TLS_SERVER, False) == (built.protocol, built.check_hostname)


@pytest.mark.parametrize(
    ("auth", "mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_NONE),
        ("RequireAnyClientCert", ssl.CERT_REQUIRED),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_verify_mode(pki: Path, auth: str, mode: ssl.VerifyMode) -> None:
    """client_auth_type maps to the context's verify mode."""
    ca = None if mode == ssl.CERT_NONE else str(pki / "ca.crt")
    assert mode == context(tls_settings(pki, client_auth_type=auth, client_ca_file=ca)).verify_mode


def test_client_ca_loaded(pki: Path) -> None:
    """The client CA file's certificate is what client certificates are verified against."""
    web = tls_settings(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "ca.crt"))
    assert [((("commonName", "test-ca"),),)] == [cert["subject"] for cert in context(web).get_ca_certs()]


def test_server_cipher_preference_off(pki: Path) -> None:
    """prefer_server_cipher_suites: false clears OpenSSL's server preference option."""
    assert 0 == context(tls_settings(pki, prefer_server_cipher_suites=False)).options & ssl.OP_CIPHER_SERVER_PREFERENCE


def test_mismatched_key(pki: Path) -> None:
    """A key that does not belong to the certificate is a WebConfigError."""
    with pytest.raises(WebConfigError, match=r"^tls_server_config.cert_file/key_file cannot be loaded"):
        ssl_context(tls_settings(pki, key_file=str(pki / "client.key")))


def test_encrypted_key_refused_without_prompt(pki: Path) -> None:
    """An encrypted key is refused at once rather than prompting for a passphrase."""
    with pytest.raises(WebConfigError, match=r"cannot be loaded \(encrypted\)"):
        ssl_context(tls_settings(pki, key_file=str(pki / "encrypted.key")))


def test_client_ca_not_pem(pki: Path) -> None:
    """A client CA file holding no certificate is a WebConfigError naming client_ca_file."""
    web = tls_settings(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "server.csr"))
    with pytest.raises(WebConfigError, match=r"^tls_server_config.client_ca_file="):
        ssl_context(web)


# ------------------------------------------------------------------------------------------------ check_config


@pytest.fixture
def web_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], dict[str, str]]:
    """Factory: an environment naming a web-config file holding the text given; check_config's record is restored."""
    monkeypatch.setattr(runtime.STATE, "config", None)

    def environ(text: str) -> dict[str, str]:
        path = tmp_path / "web.yml"
        path.write_text(text)
        return {VARIABLE: str(path)}

    return environ


def test_check_config_stops_on_a_pair_that_does_not_load(
    pki: Path, web_file: Callable[[str], dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate and the wrong key stop gunicorn in check_config with one line: variable, file, problem."""
    environ = web_file(tls_yaml(cert_file=str(pki / "server.crt"), key_file=str(pki / "client.key")))
    with pytest.raises(SystemExit) as info:
        runtime.check_config(environ)
    lines = capsys.readouterr().err.splitlines()
    expected = (
        f"otel_gunicorn: configuration error: {VARIABLE}={environ[VARIABLE]!r} is not valid: expected a Prometheus "
        "web-config file; in it, tls_server_config.cert_file/key_file cannot be loaded ("
    )
    assert (1, 1, True) == (info.value.code, len(lines), lines[0].startswith(expected)), lines


def test_from_env_only_parses(pki: Path, web_file: Callable[[str], dict[str, str]]) -> None:
    """Config.from_env parses the file but loads no certificate: that check is the arbiter's check_config."""
    environ = web_file(tls_yaml(cert_file=str(pki / "server.crt"), key_file=str(pki / "client.key")))
    web = Config.from_env(environ).prometheus_web_config
    assert web is not None and web.tls is not None
    assert str(pki / "client.key") == web.tls.key_file


def test_check_config_keeps_a_good_file(pki: Path, web_file: Callable[[str], dict[str, str]]) -> None:
    """A certificate and key that load pass check_config, which returns the parsed file in the Config."""
    environ = web_file(tls_yaml(cert_file=str(pki / "server.crt"), key_file=str(pki / "server.key")))
    web = runtime.check_config(environ).prometheus_web_config
    assert web is not None and web.tls is not None
    assert str(pki / "server.key") == web.tls.key_file


# ------------------------------------------------------------------------------------------------ basic_auth


@dataclasses.dataclass
class Response:
    status: str
    headers: dict[str, str]
    body: bytes
    seen: dict[str, Any] | None  # the environ the wrapped app received, None when it was not called


def call(app: Callable[..., Any], authorization: str | None = None) -> Response:
    """Call the middleware chain built around fake_app with one request."""
    seen.clear()
    started: list[Any] = []
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
    status, headers = started[0]
    return Response(status, dict(headers), body, seen.pop() if seen else None)


seen: list[dict[str, Any]] = []


def fake_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    seen.append(environ)
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "sameorigin")])
    return [b"metrics"]


def basic(user: str | bytes, password: bytes) -> str:
    user = user.encode() if isinstance(user, str) else user
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Counts bcrypt checks (the hash each was checked against)."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_no_credentials() -> None:
    """A request without Authorization gets 401 with a Basic challenge naming the realm."""
    response = call(basic_auth(fake_app, {"alice": HASH}))
    expected = ("401 Unauthorized", 'Basic realm="otel_gunicorn", charset="UTF-8"', None)
    assert expected == (response.status, response.headers["WWW-Authenticate"], response.seen)


def test_wrong_password() -> None:
    """A wrong password gets 401 and the app is not called."""
    response = call(basic_auth(fake_app, {"alice": HASH}), basic("alice", b"wrong"))
    assert ("401 Unauthorized", None) == (response.status, response.seen)


def test_unknown_user() -> None:
    """A user not in the file gets 401, even with a password that is right for another user."""
    response = call(basic_auth(fake_app, {"alice": HASH}), basic("mallory", PASSWORD))
    assert "401 Unauthorized" == response.status


def test_right_password() -> None:
    """The right password reaches the app."""
    response = call(basic_auth(fake_app, {"alice": HASH}), basic("alice", PASSWORD))
    assert ("200 OK", b"metrics") == (response.status, response.body)


def test_app_sees_user_not_credentials() -> None:
    """The app gets REMOTE_USER and no Authorization header, so nothing downstream can log the password."""
    response = call(basic_auth(fake_app, {"alice": HASH}), basic("alice", PASSWORD))
    assert response.seen is not None
    assert ("alice", False) == (response.seen["REMOTE_USER"], "HTTP_AUTHORIZATION" in response.seen)


def test_realm() -> None:
    """The realm given appears in the challenge."""
    response = call(basic_auth(fake_app, {"alice": HASH}, realm="metrics"))
    assert 'Basic realm="metrics", charset="UTF-8"' == response.headers["WWW-Authenticate"]


def test_realm_with_quote_refused() -> None:
    """A realm that would break the challenge header is refused at construction."""
    with pytest.raises(ValueError, match="realm"):
        basic_auth(fake_app, {"alice": HASH}, realm='a"b')


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Basic",
        "Basic !!!not-base64!!!",
        "Bearer " + base64.b64encode(b"alice:" + PASSWORD).decode(),
        "Basic " + base64.b64encode(b"alice" + PASSWORD).decode(),
        basic(b"\xff\xfe", PASSWORD),
    ],
    ids=["empty", "no token", "bad base64", "other scheme", "no colon", "user not utf-8"],
)
def test_malformed_header(authorization: str) -> None:
    """A malformed Authorization header gets 401, not an error."""
    assert "401 Unauthorized" == call(basic_auth(fake_app, {"alice": HASH}), authorization).status


def test_scheme_case_insensitive() -> None:
    """The scheme name is case-insensitive (RFC 7235)."""
    response = call(basic_auth(fake_app, {"alice": HASH}), basic("alice", PASSWORD).replace("Basic", "basic"))
    assert "200 OK" == response.status


def test_password_with_colon() -> None:
    """Only the first colon separates user and password."""
    hashed = bcrypt.hashpw(b"a:b:c", bcrypt.gensalt(rounds=4))
    assert "200 OK" == call(basic_auth(fake_app, {"bob": hashed}), basic("bob", b"a:b:c")).status


def test_long_password_truncated_like_bcrypt() -> None:
    """A password over bcrypt's 72 bytes matches a hash of its first 72, as htpasswd and Go compute it."""
    long = b"x" * 100
    hashed = bcrypt.hashpw(long[:72], bcrypt.gensalt(rounds=4))
    assert "200 OK" == call(basic_auth(fake_app, {"bob": hashed}), basic("bob", long)).status


def test_no_users_refuses_everyone() -> None:
    """With no users nobody gets in."""
    assert "401 Unauthorized" == call(basic_auth(fake_app, {}), basic("alice", PASSWORD)).status


def test_success_cached(checkpw_calls: list[bytes]) -> None:
    """A repeated correct (user, password) pays bcrypt once."""
    app = basic_auth(fake_app, {"alice": HASH})
    statuses = [call(app, basic("alice", PASSWORD)).status for _ in range(3)]
    assert (["200 OK"] * 3, 1) == (statuses, len(checkpw_calls))


def test_failures_not_cached(checkpw_calls: list[bytes]) -> None:
    """Every wrong password pays bcrypt: guessing gains nothing from the cache."""
    app = basic_auth(fake_app, {"alice": HASH})
    for _ in range(3):
        call(app, basic("alice", b"wrong"))
    assert 3 == len(checkpw_calls)


def test_cache_not_fooled_by_other_password(checkpw_calls: list[bytes]) -> None:
    """After a success, a different password for the same user is checked again and refused."""
    app = basic_auth(fake_app, {"alice": HASH})
    call(app, basic("alice", PASSWORD))
    assert ("401 Unauthorized", 2) == (call(app, basic("alice", b"wrong")).status, len(checkpw_calls))


def test_unknown_user_pays_bcrypt(checkpw_calls: list[bytes]) -> None:
    """An unknown user costs one bcrypt check too, so timing does not reveal which users exist."""
    call(basic_auth(fake_app, {"alice": HASH}), basic("mallory", PASSWORD))
    assert [HASH] == checkpw_calls


def test_cache_bounded() -> None:
    """The cache keeps at most cache_size successes."""
    users = {f"user{i}": HASH for i in range(5)}
    app = basic_auth(fake_app, users, cache_size=2)
    for name in users:
        call(app, basic(name, PASSWORD))
    assert 2 == len(app.auth_cache)  # type: ignore[attr-defined]


def test_cache_evicts_least_recently_used(checkpw_calls: list[bytes]) -> None:
    """The least recently used success is the one forgotten."""
    app = basic_auth(fake_app, {"a": HASH, "b": HASH, "c": HASH}, cache_size=2)
    for name in ("a", "b", "a", "c", "a", "b"):  # c evicts b (a was used more recently); then b is checked again
        call(app, basic(name, PASSWORD))
    assert 4 == len(checkpw_calls)


def test_cache_never_holds_the_password() -> None:
    """The cache keys are digests, not the password."""
    app = basic_auth(fake_app, {"alice": HASH})
    call(app, basic("alice", PASSWORD))
    assert not any(PASSWORD in key for key in app.auth_cache._entries)  # type: ignore[attr-defined]


def test_with_headers_replaces_same_name() -> None:
    """Configured headers are added, replacing a same-named header the app set."""
    response = call(with_headers(fake_app, {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}))
    assert ("deny", "nosniff") == (response.headers["X-Frame-Options"], response.headers["X-Content-Type-Options"])


def test_secure_app_headers_on_401() -> None:
    """The configured headers also go out with a 401."""
    app = secure_app(fake_app, WebConfig(users={"alice": HASH}, headers={"X-Frame-Options": "deny"}))
    response = call(app)
    assert ("401 Unauthorized", "deny") == (response.status, response.headers["X-Frame-Options"])


def test_secure_app_without_users_is_open() -> None:
    """Without users, secure_app does not ask for credentials."""
    assert "200 OK" == call(secure_app(fake_app, WebConfig())).status


# ------------------------------------------------------------------------------------------------ TLS server


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def serve(pki: Path) -> Iterator[Callable[[WebConfig], int]]:
    """Factory: serve fake_app over TLS per a WebConfig from a thread polling like the endpoint; returns the port."""
    servers: list[TLSThreadingWSGIServer] = []
    stop = threading.Event()

    def start(web: WebConfig) -> int:
        built = ssl_context(web)

        class Server(TLSThreadingWSGIServer):
            ssl_context = built
            handshake_timeout = 3.0

        server = make_server("127.0.0.1", 0, secure_app(fake_app, web), Server, handler_class=_Quiet)
        server.timeout = 0.1
        servers.append(server)

        def loop() -> None:
            while not stop.is_set():
                server.handle_request()

        threading.Thread(target=loop, daemon=True).start()
        return int(server.server_address[1])

    yield start
    stop.set()
    for server in servers:
        server.server_close()


def https_get(port: int, pki: Path, *, cert: str | None = None, authorization: str | None = None) -> int:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert is not None:
        context.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": authorization} if authorization else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_https_served(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """An HTTPS request with the right credentials gets 200."""
    port = serve(WebConfig(tls=tls_settings(pki).tls, users={"alice": HASH}))
    assert 200 == https_get(port, pki, authorization=basic("alice", PASSWORD))


def test_plain_http_gets_no_response(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """Plain HTTP to the TLS port gets no HTTP response: the connection is just closed."""
    port = serve(tls_settings(pki))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/metrics")
        conn.getresponse()
    conn.close()


def test_silent_client_does_not_block(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """A client that connects and never sends does not delay another client's handshake."""
    port = serve(tls_settings(pki))
    with socket.create_connection(("127.0.0.1", port)):
        started = time.monotonic()
        status = https_get(port, pki)
        assert (200, True) == (status, time.monotonic() - started < 2.0)


def test_client_certificate_required(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """RequireAndVerifyClientCert refuses a client without a certificate."""
    port = serve(tls_settings(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "ca.crt")))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, pki)


def test_client_certificate_from_another_ca(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """RequireAndVerifyClientCert refuses a certificate the client CA did not issue."""
    port = serve(tls_settings(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "ca.crt")))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(port, pki, cert="stranger")


def test_client_certificate_verified(pki: Path, serve: Callable[[WebConfig], int]) -> None:
    """RequireAndVerifyClientCert admits a certificate issued by the client CA."""
    port = serve(tls_settings(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(pki / "ca.crt")))
    assert 200 == https_get(port, pki, cert="client")


@pytest.mark.parametrize(
    "text", ["", "# nothing yet\n", "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"]
)
def test_a_file_asking_for_neither_tls_nor_auth_is_refused(tmp_path, text: str) -> None:
    """Setting the variable asks for a secured endpoint: a file that secures nothing is an error, not plain HTTP."""
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(str(path))
    assert "asks for neither TLS nor basic auth" in str(info.value)
