"""A real gunicorn master on loopback: its command line, its environment, and the server object tests talk to.

Used by ``tests/e2e`` and ``tests/chaos`` (through the ``start_gunicorn`` fixture) and by ``bench/run.py``. The
master runs in the caller's working directory with ``-c python:otel_gunicorn.conf`` (or another config file, or
none: bare gunicorn), an ephemeral application port and metrics port, ``--graceful-timeout 5`` and no control socket
where gunicorn has one (servers run side by side). It imports the applications from ``apps`` and otel_gunicorn from
``package_root`` (this checkout unless told otherwise). Hazards: the environment drops every ``OTEL_*`` and
``GUNICORN_*`` variable of the calling process, so a developer's shell cannot change what a test sees; an
application must answer ``GET /ready`` with 200 (the readiness probe, which is not application traffic).
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import gunicorn

from harness import net, proc, scrape
from harness.process import LoggedProcess
from harness.scrape import Exposition, Sample
from harness.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
OTEL_CONFIG = "python:otel_gunicorn.conf"
#: OTEL_GUNICORN_METRICS_INTERVAL unless the caller sets it: short, so tests see reports quickly
DEFAULT_INTERVAL = "0.5"


def command(
    app: str,
    *,
    bind: str,
    config: str | None = OTEL_CONFIG,
    args: Iterable[str] = (),
    script: bool = False,
    instrument: Iterable[str] | None = None,
) -> list[str]:
    """The command line of a gunicorn master.

    ``script=True`` runs the ``gunicorn`` console script beside this Python instead of ``python -m gunicorn``: a
    USR2 re-exec repeats ``sys.argv``, and ``python .../gunicorn/__main__.py`` puts the gunicorn package directory
    first on ``sys.path``, where ``gunicorn/http`` shadows the standard library's ``http``. ``instrument``: start it
    as ``opentelemetry-instrument [instrument...] gunicorn ...`` (the console scripts beside this Python).
    """
    scripts = Path(sys.executable).parent
    if instrument is not None:
        line = [str(scripts / "opentelemetry-instrument"), *instrument, str(scripts / "gunicorn")]
    elif script:
        line = [sys.executable, str(scripts / "gunicorn")]
    else:
        line = [sys.executable, "-m", "gunicorn"]
    if config is not None:
        line += ["-c", config]
    line += ["-b", bind, *args]
    if gunicorn.version_info >= (25, 1):
        line.append("--no-control-socket")
    return [*line, app]


def environment(
    env: Mapping[str, str] | None = None, *, apps: Path | None = None, package_root: Path = ROOT
) -> dict[str, str]:
    """This process's environment without its ``OTEL_*``/``GUNICORN_*`` settings, importing the applications from
    ``apps`` and otel_gunicorn from ``package_root``, then ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_"))}
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (apps, package_root) if p is not None)
    environ.update(env or {})
    return environ


def run(
    workdir: Path,
    app: str,
    *,
    env: Mapping[str, str] | None = None,
    config: str | None = OTEL_CONFIG,
    apps: Path | None = None,
    package_root: Path = ROOT,
    timeout: float = 20.0,
) -> subprocess.CompletedProcess[str]:
    """Run a gunicorn master expected to exit by itself (a bad setting); its output captured as text.

    Should it start after all, it binds loopback ports of its own, never the default metrics port another test uses.
    """
    line = command(app, bind=f"{net.LOOPBACK}:{net.free_port()}", config=config)
    settings = {"OTEL_EXPORTER_PROMETHEUS_HOST": net.LOOPBACK, "OTEL_EXPORTER_PROMETHEUS_PORT": str(net.free_port())}
    environ = environment({**settings, **(env or {})}, apps=apps, package_root=package_root)
    return subprocess.run(line, cwd=workdir, env=environ, capture_output=True, text=True, timeout=timeout)


class Gunicorn(LoggedProcess):
    """One real gunicorn master, ready when started: it answers ``/ready``, and (by default) its endpoint serves.

    ``workers``: add ``-w workers`` and wait until that many workers run. ``metrics_port``: where the endpoint is
    expected; by default the ``OTEL_EXPORTER_PROMETHEUS_PORT`` given in ``env``, else a free port that is passed
    to the server in it. ``script``: start through the console script (see :func:`command`). ``probe=False``: send
    the application no readiness request (``/ready`` is a request all the same, measured like any other), for a
    test of a server that has served none; ready then means its ``workers`` run and its endpoint serves.
    ``instrument``: start it through ``opentelemetry-instrument`` with these flags (see :func:`command`).
    """

    def __init__(
        self,
        workdir: Path,
        app: str = "counting:app",
        *,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        config: str | None = OTEL_CONFIG,
        workers: int | None = None,
        wait_metrics: bool = True,
        metrics_port: int | None = None,
        apps: Path | None = None,
        package_root: Path = ROOT,
        script: bool = False,
        instrument: Iterable[str] | None = None,
        name: str = "gunicorn",
        timeout: float = 30.0,
        probe: bool = True,
    ) -> None:
        env = dict(env or {})
        self.port = net.free_port()
        port_setting = env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "")
        self.metrics_port = metrics_port or (int(port_setting) if port_setting.isdigit() else net.free_port())
        self.interval = float(env.get("OTEL_GUNICORN_METRICS_INTERVAL", DEFAULT_INTERVAL))
        settings = {
            "OTEL_GUNICORN_METRICS_INTERVAL": DEFAULT_INTERVAL,
            "OTEL_EXPORTER_PROMETHEUS_HOST": net.LOOPBACK,
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(self.metrics_port),
            **env,
        }
        args = ["--graceful-timeout", "5", *(["-w", str(workers)] if workers else []), *args]
        super().__init__(
            name,
            command(
                app, bind=f"{net.LOOPBACK}:{self.port}", config=config, args=args, script=script, instrument=instrument
            ),
            workdir / f"{name}-{self.port}.log",
            cwd=workdir,
            env=environment(settings, apps=apps, package_root=package_root),
        )

        def ready() -> None:
            if probe:
                wait_until(self._ready_status, timeout, what=f"{name} to answer", until=lambda status: status == 200)
            if workers:
                wait_until(
                    self.worker_pids,
                    timeout,
                    what=f"{name}'s {workers} workers",
                    until=lambda pids: len(pids) == workers,
                )
            if wait_metrics:
                wait_until(self.scrape_text, timeout, what=f"{name}'s metrics endpoint")

        self.ready_or_stop(ready)

    def _ready_status(self) -> int:
        self.assert_running()
        return self.get("/ready")[0]

    # ---------------------------------------------------------------- traffic

    def get(
        self, path: str = "/", timeout: float = 10.0, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """``(status, body)`` of one GET to the application."""
        return net.get(self.port, path, headers=headers, timeout=timeout)

    def load(self, requests: int, concurrency: int = 6, path: str = "/") -> list[int]:
        """Send exactly ``requests`` requests from ``concurrency`` threads; return their status codes."""
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            return [status for status, _ in pool.map(lambda _i: self.get(path), range(requests))]

    # ---------------------------------------------------------------- metrics

    def scrape_text(self, accept: str | None = None) -> str:
        """The body of one GET /metrics (OSError when nothing listens, HTTPException unless 200)."""
        return scrape.fetch(self.metrics_port, accept=accept)[1].decode()

    def scrape(self) -> Exposition:
        """One scrape, to read several values that belong together."""
        return Exposition(self.scrape_text())

    def samples(self, name: str) -> list[Sample]:
        """All samples called exactly ``name`` (e.g. ``app_requests_total``) in one scrape."""
        return self.scrape().samples(name)

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` matching ``labels`` in one scrape; None when there is none."""
        return self.scrape().value(name, **labels)

    def wait_value(self, name: str, expected: float, timeout: float | None = None, **labels: str) -> float:
        """Wait until :meth:`value` is ``expected`` (by default for two report intervals and 3 s); return it."""
        wait_until(
            lambda: self.value(name, **labels),
            timeout or 2 * self.interval + 3,
            what=f"{name}{labels} == {expected}",
            until=lambda value: value == expected,
        )
        return expected

    # ---------------------------------------------------------------- processes

    def worker_pids(self) -> set[int]:
        return proc.children(self.pid)

    def booted(self) -> int:
        """How many workers this master has booted, from its log."""
        return self.log().count("Booting worker")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)
