"""``otel-gunicorn top`` against real gunicorn: the snapshot, the live view in tmux, TLS + basic auth, and failures.

Each test runs the console script in a subprocess (``python -m otel_gunicorn`` where the script is not installed)
against a server the ``start_gunicorn`` fixture started on loopback. Requests are held open with
``counting:app``'s ``/slow?SECONDS``; the server's ``--graceful-timeout 5`` cuts them off when it stops. Every wait
is a bounded poll: workers report every 0.5 s, so what ``top`` shows lags the requests by up to that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import http.client
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from harness import webconfig as harness_webconfig
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

SCRIPT = Path(sys.executable).parent / "otel-gunicorn"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "otel_gunicorn"]
WEB_CONFIG = "OTEL_GUNICORN_PROMETHEUS_WEB_CONFIG"
USER, PASSWORD = "prometheus", "e2e-Top-Passw0rd"


def top(*args: str, password: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """One ``otel-gunicorn top ARGS`` run to completion, 120 columns wide, its output captured."""
    env = {k: v for k, v in os.environ.items() if k != "OTEL_GUNICORN_TOP_PASSWORD"}
    env["COLUMNS"] = "120"
    if password is not None:
        env["OTEL_GUNICORN_TOP_PASSWORD"] = password
    command = [*COMMAND, "top", "--timeout", "3", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def worker_rows(screen: str) -> list[list[str]]:
    """The rows of the workers table in a rendered frame, split into columns (slot, state, in flight, ...)."""
    rows = [line.split() for line in screen.splitlines()]
    return [row for row in rows if len(row) > 5 and row[0].isdigit() and row[1] in ("busy", "idle")]


def slot_states(screen: str) -> list[tuple[str, str, str]]:
    """``(slot, state, in flight)`` of each row of the workers table."""
    return [(row[0], row[1], row[2]) for row in worker_rows(screen)]


def hold(server, seconds: int, count: int = 1) -> None:
    """``count`` requests to ``/slow?seconds`` in daemon threads, spaced so each reaches a worker before the next.

    Not joined: the server's stop at the end of the test cuts them off, and the error that gives is expected.
    """

    def one() -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            server.get(f"/slow?{seconds}", timeout=seconds + 10)

    for _ in range(count):
        threading.Thread(target=one, daemon=True).start()
        time.sleep(0.1)


def metrics_url(server) -> str:
    return f"http://127.0.0.1:{server.metrics_port}/metrics"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failed run printed on stderr (and nothing on stdout, and no traceback)."""
    assert ("", 1, False) == (result.stdout, len(result.stderr.splitlines()), "Traceback" in result.stderr), result
    return result.stderr


# ---------------------------------------------------------------- --once


def test_once_shows_the_one_busy_sync_worker(start_gunicorn):
    """2 sync workers and one held-open request: exactly one slot busy with one request in flight."""
    server = start_gunicorn(args=["-w", "2"], workers=2)
    hold(server, 8)

    def busy(result: subprocess.CompletedProcess[str]) -> bool:
        states = slot_states(result.stdout)
        return len(states) == 2 and any(s[1] == "busy" for s in states)

    result = wait_until(lambda: top("--once", metrics_url(server)), 15, 0.2, "a busy slot in top --once", until=busy)
    code, screen = result.returncode, result.stdout
    states = slot_states(screen)
    assert (0, [("busy", "1")], 1) == (
        code,
        [s[1:] for s in states if s[1] == "busy"],
        [s[1] for s in states].count("idle"),
    )
    assert "workers busy 1/2" in screen


def test_once_counts_in_flight_requests_of_gthread_workers(start_gunicorn):
    """2 gthread workers with 2 threads, three held-open requests: each one in flight or waiting in a thread pool
    queue (the kernel spreads them over the workers as it likes), and both slots shown."""
    server = start_gunicorn(args=["-w", "2", "-k", "gthread", "--threads", "2"], workers=2)
    hold(server, 8, count=3)

    def held() -> tuple[int, int]:
        """Rows of the workers table, and the requests in flight or queued they show."""
        rows = worker_rows(top("--once", metrics_url(server)).stdout)
        return len(rows), sum(int(row[2]) + int(row[5]) for row in rows if row[2].isdigit() and row[5].isdigit())

    what = "two slots, three requests in flight or queued in top --once"
    assert (2, 3) == wait_until(held, 15, 0.2, what, until=lambda seen: seen == (2, 3))


def test_once_is_plain_text_for_scripts(start_gunicorn):
    """Piped output has no escape sequences and no alternate screen, and ends with the snapshot line."""
    server = start_gunicorn()
    result = top("--once", metrics_url(server))
    assert (0, False, "one snapshot at") == (
        result.returncode,
        "\x1b" in result.stdout,
        result.stdout.splitlines()[-1][:15],
    )


# ---------------------------------------------------------------- failures


def test_unreachable_port_exits_2_with_one_line():
    """Nothing listens: exit 2, "cannot reach", one line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = top("--once", f"http://127.0.0.1:{port}/metrics")
    assert (2, True) == (result.returncode, "cannot reach" in one_line(result))


def test_the_application_port_is_not_an_otel_gunicorn_endpoint(start_gunicorn):
    """gunicorn's application port answers, but not with our metrics: exit 4, one line."""
    server = start_gunicorn()
    result = top("--once", f"http://127.0.0.1:{server.port}/metrics")
    assert (4, True) == (result.returncode, "not an otel_gunicorn endpoint" in one_line(result))


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'# TYPE other_total counter\nother_total{job="x"} 1\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_exporter() -> Iterator[int]:
    """A tiny Prometheus endpoint that is not otel_gunicorn's, on a loopback port; its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_another_exporter_is_not_an_otel_gunicorn_endpoint(other_exporter):
    """A valid exposition without scope otel_gunicorn: exit 4, one line."""
    result = top("--once", f"http://127.0.0.1:{other_exporter}/metrics")
    assert (4, True) == (result.returncode, "otel_gunicorn" in one_line(result))


# ---------------------------------------------------------------- TLS and basic auth


def write_web_config(directory: Path) -> Path:
    """A web-config with a self-signed certificate for 127.0.0.1 and one bcrypt user, in ``directory``."""
    return harness_webconfig.write_web_config(directory, USER, bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)))


@pytest.fixture
def secured(start_gunicorn, tmp_path) -> tuple[str, Path]:
    """A server whose endpoint takes HTTPS and basic auth: its URL and the certificate to trust."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    web = write_web_config(tmp_path / "web")
    server = start_gunicorn(env={WEB_CONFIG: str(web)}, wait_metrics=False)
    url, ca = f"https://127.0.0.1:{server.metrics_port}/metrics", tmp_path / "web" / "server.crt"
    once = ["--once", "--cacert", str(ca), url]
    wait_until(lambda: top(*once), 20, 0.2, "the HTTPS endpoint", until=lambda result: result.returncode != 2)
    return url, ca


def test_tls_and_basic_auth_with_the_right_credentials(secured):
    """``--user`` with the password in the environment and ``--cacert``: the snapshot, exit 0."""
    url, ca = secured
    result = top("--once", "--cacert", str(ca), "--user", USER, url, password=PASSWORD)
    assert (0, True) == (result.returncode, "Workers" in result.stdout), result.stderr


def test_credentials_from_a_password_file_and_from_the_url(secured, tmp_path):
    """The password from ``--password-file``, and ``user:pass@`` in the URL, both work."""
    url, ca = secured
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    from_file = top("--once", "--cacert", str(ca), "--user", USER, "--password-file", str(tmp_path / "pw"), url)
    from_url = top("--once", "--cacert", str(ca), url.replace("https://", f"https://{USER}:{PASSWORD}@"))
    assert (0, 0) == (from_file.returncode, from_url.returncode), from_file.stderr + from_url.stderr


def test_wrong_password_exits_3_with_one_line(secured):
    """A rejected password: exit 3, one line saying so, and the password is not in it."""
    url, ca = secured
    result = top("--once", "--cacert", str(ca), "--user", USER, url, password="not-" + PASSWORD)
    line = one_line(result)
    assert (3, True, False) == (result.returncode, "rejected" in line, PASSWORD in line)


def test_no_credentials_exits_3_saying_they_are_needed(secured):
    """No credentials for a protected endpoint: exit 3, one line naming the options."""
    url, ca = secured
    result = top("--once", "--cacert", str(ca), url)
    assert (3, True) == (result.returncode, "credentials are needed" in one_line(result))


def test_untrusted_certificate_is_a_tls_failure(secured):
    """Without ``--cacert`` the self-signed certificate is not trusted: exit 5, one line."""
    url, _ = secured
    result = top("--once", "--user", USER, url, password=PASSWORD)
    assert (5, True) == (result.returncode, "TLS" in one_line(result))


def test_insecure_skips_the_certificate_check(secured):
    """``--insecure`` reads the endpoint without trusting its certificate."""
    url, _ = secured
    assert 0 == top("--once", "--insecure", "--user", USER, url, password=PASSWORD).returncode


# ---------------------------------------------------------------- the live view in tmux


class Tmux:
    """A private tmux server (its own socket) running one command in a 120x40 pane.

    The pane's command runs without LINES and COLUMNS: the test process can carry them in its C environment (set by
    a library at 80x24, not in ``os.environ``), tmux passes them on, and rich takes them over the pane's real size,
    so ``top`` would draw an 80x24 screen in the 120x40 pane.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.socket = str(tmp_path / "tmux.sock")

    def start(self, command: str, width: int = 120, height: int = 40) -> None:
        """Run ``command`` in session "top", then print its exit code and keep the pane open for a minute."""
        shell = f"env -u LINES -u COLUMNS {command}; echo EXITED=$?; sleep 60"
        self("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), shell)

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")


@pytest.fixture
def tmux(tmp_path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("needs tmux to drive the interactive view (apt-get install tmux)")
    session = Tmux(tmp_path)
    try:
        yield session
    finally:
        subprocess.run(["tmux", "-S", session.socket, "kill-server"], capture_output=True, timeout=10)


def test_live_view_in_tmux_shows_the_busy_slot_and_quits_on_ctrl_c(start_gunicorn, tmux):
    """The interactive view shows the held-open request's slot busy; Ctrl-C ends it with exit 0."""
    server = start_gunicorn(args=["-w", "2"], workers=2)
    hold(server, 15)
    command = " ".join([*COMMAND, "top", metrics_url(server)])
    tmux.start(command)

    def busy_screen(screen: str) -> bool:
        # a whole frame, status line included: capture-pane may catch one half drawn
        drawn = "refreshing every 1 s" in screen
        return drawn and any(state == "busy" for _, state, _ in slot_states(screen))

    screen = wait_until(tmux.screen, 20, 0.2, "a busy slot in the live view", until=busy_screen)
    busy = [(state, in_flight) for _, state, in_flight in slot_states(screen) if state == "busy"]
    assert [("busy", "1")] == busy, screen
    tmux("send-keys", "-t", "top", "C-c")
    after = wait_until(tmux.screen, 10, 0.2, "top to exit on Ctrl-C", until=lambda screen: "EXITED=" in screen)
    assert ("EXITED=0", False) == (after.strip().splitlines()[-1], "Traceback" in after), after


# ---------------------------------------------------------------- the request rate under steady traffic

TRAFFIC_RATE, TRAFFIC_SECONDS, TOLERANCE = 20.0, 28.0, 0.30


@dataclasses.dataclass(frozen=True)
class Refresh:
    """One refresh of the live view: when (wall clock, whole seconds), requests/s, and its window."""

    at: float
    rate: float
    window: float
    age: float


def refresh_of(screen: str) -> Refresh | None:
    """The refresh a whole frame on ``screen`` shows (status line included); None before it has a window."""
    header = re.search(r"otel-gunicorn top \S+\s+(\d\d):(\d\d):(\d\d)", screen)
    rate = re.search(r"requests (\d+\.\d)/s", screen)
    window = re.search(r"over the last (\d+\.\d) s of worker reports, up to (now|(\d+) s ago)", screen)
    if not (header and rate and window and "refreshing every 1 s" in screen):
        return None
    today = datetime.datetime.now().replace(microsecond=0)
    shown = today.replace(hour=int(header[1]), minute=int(header[2]), second=int(header[3]))
    age = float(window[3] or 0)
    return Refresh(shown.timestamp() + 0.5, float(rate[1]), float(window[1]), age)  # +0.5: the middle of the second


def steady_traffic(server, done: list[float]) -> None:
    """``TRAFFIC_RATE`` requests/s to ``/`` for ``TRAFFIC_SECONDS``, one at a time on a steady beat; each one's
    completion time (wall clock) appended to ``done``."""
    beat, deadline = time.monotonic(), time.monotonic() + TRAFFIC_SECONDS
    while time.monotonic() < deadline:
        server.get("/")
        done.append(time.time())
        beat += 1 / TRAFFIC_RATE
        time.sleep(max(0.0, beat - time.monotonic()))


def test_live_request_rate_is_within_30_percent_of_steady_traffic(start_gunicorn, tmux):
    """At the default report interval (5 s), 20 requests/s for 28 s: after a warm-up (a report interval and a refresh
    into the traffic), every refresh's requests/s is within 30 % of what the client completed over the window top
    says it spans."""
    server = start_gunicorn(args=["-w", "2"], env={"OTEL_GUNICORN_METRICS_INTERVAL": "5"}, workers=2)
    done: list[float] = []
    started = time.time()
    client = threading.Thread(target=steady_traffic, args=(server, done), daemon=True)
    client.start()
    tmux.start(" ".join([*COMMAND, "top", metrics_url(server)]))
    refreshes: dict[float, Refresh] = {}

    def read() -> int:
        refresh = refresh_of(tmux.screen())
        if refresh is not None:
            refreshes[refresh.at] = refresh
        return len(done)

    wait_until(read, TRAFFIC_SECONDS + 15, 0.25, "the steady traffic to end", until=lambda _: not client.is_alive())
    stopped = done[-1]
    checked = []
    for _, refresh in sorted(refreshes.items()):
        end = refresh.at - refresh.age
        if end - refresh.window < started + 5 + 1 or end > stopped:
            continue  # the window reaches before the traffic's first whole report interval, or after its end
        true = sum(1 for t in done if end - refresh.window < t <= end) / refresh.window
        checked.append((round(refresh.at - started, 1), refresh.rate, round(true, 1), refresh.window))
    off = [row for row in checked if abs(row[1] - row[2]) > TOLERANCE * row[2]]
    assert (True, []) == (len(checked) >= 8, off), f"(s into the traffic, shown, true, window): {checked}"
