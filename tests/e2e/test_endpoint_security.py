"""The Prometheus endpoint behind an exporter-toolkit web-config file: HTTPS and basic authentication, for real.

One gunicorn master serves the endpoint with a self-signed certificate (made with the ``openssl`` command) and one
bcrypt user; the tests scrape it as Prometheus would, and as things that are not Prometheus would.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from harness import proc
from harness import webconfig as harness_webconfig
from harness.gunicorn import Gunicorn
from harness.scrape import Exposition
from harness.waiting import wait_until
from otel_gunicorn._environment import OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG as VARIABLE
from tests.e2e.apps import DIRECTORY as APPS

USER = "prometheus"
PASSWORD = "e2e-Scrape-Passw0rd"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate"),
]


def write_web_config(directory: Path, hashed: bytes) -> Path:
    return harness_webconfig.write_web_config(directory, USER, hashed)


def authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Secured:
    """The running master and how to reach its endpoint."""

    def __init__(self, server: Gunicorn, ca: Path) -> None:
        self.server = server
        self.port = server.metrics_port
        self.context = ssl.create_default_context(cafile=str(ca))

    def scrape(self, auth: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
        """``(status, body)`` of one HTTPS GET /metrics."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=timeout)
        try:
            conn.request("GET", "/metrics", headers={"Authorization": auth} if auth else {})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def authorised(self, timeout: float = 5.0) -> tuple[int, str]:
        return self.scrape(authorization(USER, PASSWORD), timeout)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """One gunicorn whose endpoint takes the web-config; stopped (and its log printed) at the end of the module."""
    tmp_path = tmp_path_factory.mktemp("secured")
    web = write_web_config(tmp_path / "web", bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)))
    server = Gunicorn(tmp_path, "counting:app", env={VARIABLE: str(web)}, wait_metrics=False, apps=APPS)
    try:
        endpoint = Secured(server, tmp_path / "web" / "server.crt")
        wait_until(endpoint.authorised, 20, what="the HTTPS metrics endpoint", until=lambda answer: answer[0] == 200)
        yield endpoint
    finally:
        server.stop()
        print(f"--- gunicorn log ({server.log_path}) ---\n{server.log()}")


def test_authorised_scrape_gets_metrics(secured: Secured) -> None:
    """An HTTPS scrape with the right credentials gets 200 and the application's metrics."""
    secured.server.get("/")
    wait_until(
        lambda: secured.authorised()[1],
        10,
        what="app_requests_total over HTTPS",
        until=lambda text: "app_requests_total" in text,
    )
    assert 200 == secured.authorised()[0]


def test_no_credentials(secured: Secured) -> None:
    """An HTTPS scrape without credentials gets 401."""
    assert 401 == secured.scrape()[0]


def test_wrong_password(secured: Secured) -> None:
    """An HTTPS scrape with a wrong password gets 401."""
    assert 401 == secured.scrape(authorization(USER, "not-the-password"))[0]


def handshakes_failed(secured: Secured) -> float:
    status, text = secured.authorised()
    assert 200 == status
    value = Exposition(text).value("otel_gunicorn_endpoint_handshakes_failed_total")
    assert value is not None, "the endpoint serves TLS: its handshake failures are counted"
    return value


def test_plain_http_gets_no_http_response(secured: Secured) -> None:
    """Plain HTTP to the endpoint gets no HTTP response (the failed handshake closes the connection) and is counted."""
    before = handshakes_failed(secured)
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=5)
    try:
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            conn.request("GET", "/metrics", headers={"Authorization": authorization(USER, PASSWORD)})
            conn.getresponse()
    finally:
        conn.close()
    wait_until(
        lambda: handshakes_failed(secured),
        10,
        what=f"the failed handshake to be counted, {before} before",
        until=lambda failed: failed >= before + 1,
    )


def test_silent_client_does_not_stall_scrapes(secured: Secured) -> None:
    """A TCP client that connects and never sends does not keep an authorised scrape from succeeding within 5 s."""
    with socket.create_connection(("127.0.0.1", secured.port)) as _silent:
        # the server has accepted it (and waits for its handshake) once the listener's accept queue is empty
        wait_until(
            lambda: proc.accept_queue(secured.port),
            5,
            what="the server to accept the silent client",
            until=lambda queued: queued == 0,
        )
        started = time.monotonic()
        status, _ = secured.authorised(timeout=5)
        assert (200, True) == (status, time.monotonic() - started < 5)


def test_password_never_logged(secured: Secured) -> None:
    """Neither the password nor the encoded credentials appear in gunicorn's log, after good and bad scrapes."""
    secured.authorised()
    secured.scrape(authorization(USER, PASSWORD + "x"))
    log = secured.server.log()
    encoded = authorization(USER, PASSWORD).split()[1]
    assert (False, False) == (PASSWORD in log, encoded in log)


def test_bad_web_config_stops_gunicorn_before_any_worker(tmp_path: Path, run_gunicorn) -> None:
    """A web-config with a plain password where a hash belongs stops gunicorn with one line that does not show it."""
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  {USER}: {PASSWORD}\n")
    result = run_gunicorn(env={VARIABLE: str(web)})
    lines = [line for line in result.stderr.splitlines() if VARIABLE in line]
    assert (True, 1, False, False) == (
        result.returncode != 0,
        len(lines),
        PASSWORD in result.stderr,
        "Booting worker" in result.stderr,
    ), result.stderr
