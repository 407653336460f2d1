"""The processes the bench starts: gunicorn masters of any configuration, a quiet Rotel collector, and the small
prometheus_client exporter; and what it reads of them in ``/proc`` (their process trees, CPU time, memory), and
pinning them to a CPU.

Built on the repository's ``harness`` package (the command line and environment of a gunicorn master, logged child
processes, loopback ports, ``/proc`` readers, bounded waits), without changing it: a bench server starts without
waiting (so that many start at once) and is waited for with :meth:`Server.wait_ready`; it leaves
``OTEL_GUNICORN_METRICS_INTERVAL`` unset unless told (the default, 5 s); and it tells its workers apart from
otel_gunicorn's OTLP exporter process, which is a child of the arbiter too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness import net, proc
from harness.gunicorn import command, environment
from harness.process import LoggedProcess
from harness.scrape import fetch
from harness.waiting import wait_until

APPS = Path(__file__).resolve().parent / "apps"
#: marks otel_gunicorn's OTLP exporter process among the arbiter's children
EXPORTER_MARK = b"otel_gunicorn._exporter"


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def tasks(pid: int) -> list[int]:
    """Thread ids of ``pid`` (empty when it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin(pids: Iterable[int], cpu: int) -> None:
    """Pin every thread of ``pids`` to ``cpu`` (threads and processes started later inherit it)."""
    for pid in pids:
        for task in tasks(pid):
            try:
                os.sched_setaffinity(task, {cpu})
            except OSError:
                pass  # a thread that just ended


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of ``pids`` (all threads, ended ones included); a process gone counts 0."""
    total = 0.0
    for pid in pids:
        try:
            total += proc.cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def exec_seconds(pids: Iterable[int]) -> float:
    """On-CPU time of the live threads of ``pids``, from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds): far
    finer than :func:`cpu_seconds`'s 10 ms ticks, but a thread that ends is no longer counted. For windows where
    threads neither start nor end, such as a server at rest."""
    total = 0
    for pid in pids:
        for task in tasks(pid):
            try:
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total / 1e9


def memory(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon and Pss of one process, MiB."""
    return {
        "rss_mib": round(proc.status_kib(pid, "VmRSS") / 1024, 2),
        "rss_anon_mib": round(proc.status_kib(pid, "RssAnon") / 1024, 2),
        "pss_mib": round(proc.pss_kib(pid) / 1024, 2),
    }


def can_pin() -> bool:
    """Two CPUs or more that this process may use: the server goes on CPU 1, the load generator on CPU 0."""
    try:
        return {0, 1} <= os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return False


class Server(LoggedProcess):
    """One gunicorn master (started, not yet waited for: call :meth:`wait_ready`).

    ``config``: gunicorn's ``-c`` (None: bare gunicorn); ``workers``: ``-w``; ``metrics_port``: otel_gunicorn's
    Prometheus endpoint to wait for (None: none expected). ``env`` is the whole OTEL_* configuration: the calling
    process's own OTEL_* and GUNICORN_* variables are dropped (see :func:`harness.gunicorn.environment`).
    """

    grace = 10.0

    def __init__(
        self,
        workdir: Path,
        name: str,
        app: str,
        *,
        config: str | None,
        workers: int = 1,
        args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
        package_root: Path,
    ) -> None:
        self.port = net.free_port()
        self.workers_expected = workers
        self.metrics_port = metrics_port
        line = command(
            app,
            bind=f"{net.LOOPBACK}:{self.port}",
            config=config,
            args=["--graceful-timeout", "5", "-w", str(workers), *args],
        )
        super().__init__(
            name,
            line,
            workdir / f"{name}-{self.port}.log",
            cwd=workdir,
            env=environment(env, apps=APPS, package_root=package_root),
        )

    def wait_ready(self, timeout: float = 60.0) -> Server:
        def ready() -> None:
            wait_until(self._ready_status, timeout, what=f"{self.name} to answer", until=lambda status: status == 200)
            wait_until(
                self.worker_pids,
                timeout,
                what=f"{self.name}'s {self.workers_expected} workers",
                until=lambda pids: len(pids) == self.workers_expected,
            )
            if self.metrics_port:
                wait_until(lambda: fetch(self.metrics_port)[1], timeout, what=f"{self.name}'s metrics endpoint")

        self.ready_or_stop(ready)
        return self

    def _ready_status(self) -> int:
        self.assert_running()
        return self.get("/ready")[0]

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
        return net.get(self.port, path, timeout=timeout)

    def worker_pids(self) -> set[int]:
        """The arbiter's live children but otel_gunicorn's exporter process."""
        return {pid for pid in proc.children(self.pid) if EXPORTER_MARK not in cmdline(pid)}

    def exporter_pid(self) -> int | None:
        """otel_gunicorn's OTLP exporter process (OTLP mode), if any."""
        found = [pid for pid in proc.children(self.pid) if EXPORTER_MARK in cmdline(pid)]
        return found[0] if found else None

    def tree(self) -> list[int]:
        """Arbiter, workers and exporter process."""
        exporter = self.exporter_pid()
        return [self.pid, *sorted(self.worker_pids()), *([exporter] if exporter else [])]

    def booted(self) -> int:
        """Workers this master has booted so far, from its log."""
        return self.log().count("Booting worker")

    def memory(self) -> dict[str, Any]:
        workers = sorted(self.worker_pids())
        exporter = self.exporter_pid()
        return {
            "arbiter": memory(self.pid),
            "workers": [memory(pid) for pid in workers],
            "exporter": memory(exporter) if exporter else None,
        }


def collector(workdir: Path) -> Any:
    """A quiet Rotel collector (PyPI ``rotel``) on loopback ports: :class:`harness.collector.Rotel` printing nothing
    per batch, so that the collector's own logging does not weigh on the machine being measured."""
    from harness.collector import Rotel  # imports rotel: only where a collector is needed

    return Rotel(workdir, quiet=True)


class PromExporter(LoggedProcess):
    """``apps/prom_exporter.py``: prometheus_client's multiprocess exposition of ``directory`` on a port."""

    def __init__(self, workdir: Path, directory: Path) -> None:
        import sys

        self.metrics_port = net.free_port()
        super().__init__(
            "prom-exporter",
            [sys.executable, str(APPS / "prom_exporter.py"), str(self.metrics_port)],
            workdir / f"prom-exporter-{self.metrics_port}.log",
            cwd=workdir,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        )
        self.ready_or_stop(lambda: wait_until(lambda: fetch(self.metrics_port), 15, what="the prometheus exporter"))


def stop_all(processes: Iterable[LoggedProcess]) -> None:
    """Stop several processes at once: SIGTERM to all, then wait for each (and SIGKILL any that lingers)."""
    processes = list(processes)
    for p in processes:
        if p.process.poll() is None:
            p.process.terminate()
    for p in processes:
        p.stop()
