"""Real servers for end-to-end tests: gunicorn under otel_gunicorn, the Prometheus server, promtool.

Everything listens on loopback ports picked free at start; every wait is bounded; every process is stopped by its
fixture even when the test fails, and its log is printed then to explain the failure.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gunicorn
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def gunicorn_command(config: str, bind: str, app: str, *args: str) -> list[str]:
    """The command line of a test gunicorn (no control socket where gunicorn has one: tests run side by side)."""
    command = [sys.executable, "-m", "gunicorn", "-c", config, "-b", bind, *args]
    if gunicorn.version_info >= (25, 1):
        command.append("--no-control-socket")
    return [*command, app]


def server_environment(**env: str) -> dict[str, str]:
    """This process's environment without any OTEL_/GUNICORN_ setting of its own, plus the test apps' path."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_"))}
    environ["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT)])
    environ.update(env)
    return environ


def children_of(pid: int) -> set[int]:
    """Live (non-zombie) children of ``pid``, from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] not in "ZX":
                found.add(int(entry))
    return found


def stop_process(process: subprocess.Popen, grace: float = 15.0) -> None:
    """TERM, wait up to ``grace`` seconds, then KILL: every server a test starts ends with the test."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclasses.dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Scrape:
    """One parsed exposition."""

    def __init__(self, text: str) -> None:
        self._samples = [
            Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def samples(self, name: str) -> list[Sample]:
        return [s for s in self._samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` matching ``labels``; None when there is none."""
        matching = [s.value for s in self.samples(name) if all(s.labels.get(k) == v for k, v in labels.items())]
        return sum(matching) if matching else None


class Gunicorn:
    """One real gunicorn master started with ``-c python:otel_gunicorn.conf`` (or a given config file)."""

    def __init__(
        self,
        tmp_path: Path,
        app: str = "counting:app",
        *,
        args: Iterable[str] = (),
        env: dict | None = None,
        config: str = "python:otel_gunicorn.conf",
        wait_metrics: bool = True,
    ) -> None:
        self.port = free_port()
        port_override = (env or {}).get("OTEL_EXPORTER_PROMETHEUS_PORT", "")
        self.metrics_port = int(port_override) if port_override.isdigit() else free_port()
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.interval = float((env or {}).get("OTEL_GUNICORN_METRICS_INTERVAL", "0.5"))
        command = gunicorn_command(config, f"127.0.0.1:{self.port}", app, "--graceful-timeout", "5", *args)
        defaults = {
            "OTEL_GUNICORN_METRICS_INTERVAL": "0.5",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(self.metrics_port),
        }
        environ = server_environment(**{**defaults, **(env or {})})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=tmp_path, env=environ, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._app_ready, 20, what="gunicorn to answer")
            if wait_metrics:
                wait_until(lambda: self.scrape_text(), 20, what="the metrics endpoint")
        except BaseException:
            self.stop()
            raise

    # ---------------------------------------------------------------- traffic

    def _app_ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
        return self.get("/ready")[0] == 200

    def get(self, path: str = "/", timeout: float = 10.0, headers: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def load(self, requests: int, concurrency: int = 6, path: str = "/") -> list[int]:
        """Send exactly ``requests`` requests from ``concurrency`` threads; return their status codes."""
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return [status for status, _ in pool.map(lambda _i: self.get(path), range(requests))]

    # ---------------------------------------------------------------- metrics

    def scrape_text(self, accept: str | None = None) -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.metrics_port}/metrics", headers={"Accept": accept} if accept else {}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().decode()

    def scrape(self) -> Scrape:
        """One scrape, to read several values that belong together."""
        return Scrape(self.scrape_text())

    def samples(self, name: str) -> list[Sample]:
        """All samples called exactly ``name`` (e.g. ``app_requests_total``) in one scrape."""
        return self.scrape().samples(name)

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` matching ``labels`` in one scrape; None when there is none."""
        return self.scrape().value(name, **labels)

    def wait_value(self, name: str, expected: float, timeout: float | None = None, **labels: str) -> float:
        wait_until(
            lambda: self.value(name, **labels) == expected,
            timeout or 2 * self.interval + 3,
            what=f"{name}{labels} == {expected}",
        )
        return expected

    # ---------------------------------------------------------------- processes

    def worker_pids(self) -> set[int]:
        return children_of(self.process.pid)

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        stop_process(self.process)
        self._log.close()
        return self.process.returncode


class Prometheus:
    """The real Prometheus server (Debian package), scraping given targets every second."""

    def __init__(self, tmp_path: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError("the 'prometheus' binary is missing: make test installs the Debian package")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: gunicorn\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        self.log_path = tmp_path / "prometheus.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._ready, 30, what="prometheus to be ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
            return response.status == 200

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


def promtool_check(exposition: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        raise AssertionError("'promtool' is missing: make test installs the Debian package 'prometheus'")
    return subprocess.run([binary, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30)
