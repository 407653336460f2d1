"""Figure 2: scrape time against live workers and against worker recycles, otel_gunicorn and prometheus_client.

Both systems run the same application shape, ~100 series per worker (``apps/manyseries.py`` with the OpenTelemetry
API, ``apps/manyseries_prom.py`` with prometheus_client), in sync workers:

* **otel_gunicorn**: ``-c python:otel_gunicorn.conf`` with ``OTEL_GUNICORN_METRICS_INTERVAL=1`` (reports arrive
  quickly; the arbiter's CPU while receiving them is measured and subtracted), scraped on the arbiter's endpoint;
* **prometheus_client multiprocess**: ``PROMETHEUS_MULTIPROC_DIR``, ``child_exit`` calling ``mark_process_dead``
  (``apps/prom_conf.py``), scraped on a small exporter process of its own (``apps/prom_exporter.py``: a registry with
  a MultiProcessCollector, ``start_http_server``), as prometheus_client's documentation sets it up.

Live workers: ``-w N`` for each N; requests until every worker has served one (so each reports every series) and
the merged count is checked against the requests sent. Recycles: ``-w 4 --max-requests 1``, so a worker exits after
each request and is replaced; the scrape is measured fresh, then again once the master has booted that many more
workers (counted from gunicorn's "Booting worker" lines). Every load loop is bounded by a request count and a
deadline; every scrape measurement by a count and a time budget (a slow scrape gets fewer, at least 5).
"""

from __future__ import annotations

import concurrent.futures
import http.client
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.server import PromExporter, Server, cpu_seconds, stop_all
from harness import proc
from harness.net import free_port
from harness.scrape import Exposition, fetch

INTERVAL = 1.0  # OTEL_GUNICORN_METRICS_INTERVAL of the otel_gunicorn servers here
#: the recycling servers: every request makes a worker exit and be replaced
RECYCLE_WORKERS = 4
RECYCLE_ARGS = ("--max-requests", "1")
COUNT_METRIC = "bench_events_00_total"
SYSTEMS = ("otel_gunicorn", "prometheus_client")


class System:
    """A server of one system, where it is scraped, and whose CPU a scrape costs."""

    def __init__(self, name: str, server: Server, exporter: PromExporter | None = None) -> None:
        self.name = name
        self.server = server
        self.exporter = exporter
        self.metrics_port = exporter.metrics_port if exporter else server.metrics_port
        assert self.metrics_port is not None

    @property
    def scrape_pid(self) -> int:
        """The process that renders a scrape: otel_gunicorn's arbiter, or prometheus_client's exporter."""
        return self.exporter.pid if self.exporter else self.server.pid

    def counted(self) -> float | None:
        """The merged ``bench_events_00_total{bench_kind="alpha"}``: one per request served."""
        return Exposition(fetch(self.metrics_port, timeout=120)[1].decode()).value(COUNT_METRIC, bench_kind="alpha")

    def stop(self) -> None:
        stop_all([self.server, *([self.exporter] if self.exporter else [])])


def start(system: str, workdir: Path, workers: int, args: tuple[str, ...], package_root: Path) -> System:
    name = f"scrape-{system}-w{workers}{'-recycle' if args else ''}"
    if system == "otel_gunicorn":
        port = free_port()
        env = {
            "OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL),
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
        server = Server(
            workdir,
            name,
            "manyseries:app",
            config="python:otel_gunicorn.conf",
            workers=workers,
            args=args,
            env=env,
            metrics_port=port,
            package_root=package_root,
        )
        return System(system, server.wait_ready())
    directory = Path(tempfile.mkdtemp(prefix="multiproc-", dir=workdir))
    server = Server(
        workdir,
        name,
        "manyseries_prom:app",
        config="python:prom_conf",
        workers=workers,
        args=args,
        env={"PROMETHEUS_MULTIPROC_DIR": str(directory)},
        package_root=package_root,
    ).wait_ready()
    try:
        exporter = PromExporter(workdir, directory)
    except BaseException:
        server.stop()
        raise
    return System(system, server, exporter)


def load(server: Server, requests: int, concurrency: int, deadline: float) -> tuple[int, int, set[int]]:
    """Up to ``requests`` requests from ``concurrency`` threads until ``deadline`` (monotonic):
    (answered 200, failed, worker pids seen in the bodies)."""

    def one(_i: int) -> tuple[bool, bytes]:
        if time.monotonic() > deadline:
            return False, b"deadline"
        try:
            status, body = server.get("/")
        except (OSError, http.client.HTTPException) as exc:
            return False, repr(exc).encode()
        return status == 200, body

    ok = failed = 0
    pids: set[int] = set()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for success, body in pool.map(one, range(requests)):
            if success:
                ok += 1
                pids.add(int(body.split()[-1]))
            elif body != b"deadline":
                failed += 1
    return ok, failed, pids


def wait_counted(system: System, expected: int, timeout: float) -> float | None:
    """Poll the merged count until it is ``expected`` (bounded by ``timeout``); return the last value read."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        try:
            value = system.counted()
        except (OSError, http.client.HTTPException, ValueError):
            value = None
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def time_scrapes(system: System, count: int, budget_s: float, idle_window: float) -> dict[str, Any]:
    """Sequential scrapes (each a new connection, the whole body read), at most ``count`` and, past the first 5,
    within ``budget_s``: client wall time; CPU of the process that renders them net of its rate at rest."""
    pid = system.scrape_pid
    cpu0, t0 = cpu_seconds([pid]), time.monotonic()
    time.sleep(idle_window)
    cpu1, t1 = cpu_seconds([pid]), time.monotonic()
    idle_rate = (cpu1 - cpu0) / (t1 - t0)
    durations: list[float] = []
    body = b""
    deadline = time.monotonic() + budget_s
    while len(durations) < count and (len(durations) < 5 or time.monotonic() < deadline):
        seconds, body = fetch(system.metrics_port, timeout=120)
        durations.append(seconds * 1000)
    cpu2, t2 = cpu_seconds([pid]), time.monotonic()
    n = len(durations)
    ordered = sorted(durations)
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "scrapes": n,
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[math.ceil(0.95 * n) - 1], 2),
        "min_ms": round(ordered[0], 2),
        "cpu_ms_per_scrape": round(((cpu2 - cpu1) - idle_rate * (t2 - t1)) / n * 1000, 2),
        "idle_cpu_pct": round(100 * idle_rate, 2),
        "body_bytes": len(body),
        "samples": samples,
        "scraped_process_rss_mib": round(proc.status_kib(pid, "VmRSS") / 1024, 1),
    }


def fill_workers(system: System, workers: int, timeout: float = 60) -> dict[str, Any]:
    """Requests until every worker has served one; then the merged count must equal the requests sent."""
    sent, seen = 0, set[int]()
    deadline = time.monotonic() + timeout
    while len(seen) < workers and sent < 200 * workers and time.monotonic() < deadline:
        ok, _failed, pids = load(system.server, 4 * workers, workers, deadline)
        sent += ok
        seen |= pids
    merged = wait_counted(system, sent, 4 * INTERVAL + 10)
    return {"requests": sent, "workers_that_recorded": len(seen), "merged_count": merged}


def live_workers(
    workdir: Path, counts: list[int], scrapes: int, budget_s: float, package_root: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Scrape time against ``counts`` live workers x ~100 series, both systems (both up at once, measured in turn)."""
    results: dict[str, Any] = {system: {} for system in SYSTEMS}
    for workers in counts:
        systems: list[System] = []
        try:
            for name in SYSTEMS:
                systems.append(start(name, workdir, workers, (), package_root))
            filled = {s.name: fill_workers(s, workers) for s in systems}
            time.sleep(2 * INTERVAL)  # every otel_gunicorn worker has reported its final numbers at least once
            for s in systems:
                timed = time_scrapes(s, scrapes, budget_s, idle_window=2 * INTERVAL)
                results[s.name][str(workers)] = {"workers": workers, **filled[s.name], **timed}
                log(f"scrape: {s.name} -w {workers}: {timed['median_ms']} ms")
        finally:
            stop_all([p for s in systems for p in (s.server, s.exporter) if p is not None])
    return results


class _Recycling:
    """One system's recycling server and its running totals."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.booted0 = system.server.booted()
        self.sent = self.failed = 0
        self.recycling_s = 0.0  # time spent driving recycles (not measuring)

    def recycled(self) -> int:
        return self.system.server.booted() - self.booted0

    def drive(self, target: int, deadline: float) -> None:
        """Requests until ``target`` workers were replaced (bounded by a request count and ``deadline``)."""
        started = time.monotonic()
        while self.recycled() < target and self.sent < 2 * target + 10 and time.monotonic() < deadline:
            batch = min(100, max(RECYCLE_WORKERS, target - self.recycled()))  # no overshoot past the point
            ok, bad, _pids = load(self.system.server, batch, RECYCLE_WORKERS, deadline)
            self.sent, self.failed = self.sent + ok, self.failed + bad
        if self.sent == 0:  # the application's series exist once a request was served
            ok, bad, _pids = load(self.system.server, 1, 1, deadline)
            self.sent, self.failed = self.sent + ok, self.failed + bad
        self.recycling_s += time.monotonic() - started


def recycles(
    workdir: Path,
    points: list[int],
    scrapes: int,
    budget_s: float,
    package_root: Path,
    log: Callable[[str], None],
    deadline_s: float,
) -> dict[str, Any]:
    """Scrape time after ``points`` worker recycles (``-w 4 --max-requests 1``), both systems.

    Both servers recycle at the same time (each toward the next point, within ``deadline_s`` for the whole phase:
    a point not reached by then is measured where the count stands); the scrapes are then measured one system at a
    time, with no load running."""
    running: list[_Recycling] = []
    results: dict[str, Any] = {name: [] for name in SYSTEMS}
    try:
        for name in SYSTEMS:
            running.append(_Recycling(start(name, workdir, RECYCLE_WORKERS, RECYCLE_ARGS, package_root)))
        deadline = time.monotonic() + deadline_s
        for target in points:
            with concurrent.futures.ThreadPoolExecutor(len(running)) as pool:
                list(pool.map(lambda r, t=target: r.drive(t, deadline), running))
            for r in running:
                merged = wait_counted(r.system, r.sent, 4 * INTERVAL + 10)
                time.sleep(2 * INTERVAL)
                timed = time_scrapes(r.system, scrapes, budget_s, idle_window=2 * INTERVAL)
                results[r.system.name].append(
                    {
                        "target": target,
                        "recycles": r.recycled(),
                        "requests": r.sent,
                        "failed_requests": r.failed,
                        "merged_count": merged,
                        "recycling_s": round(r.recycling_s, 1),
                        "arbiter_rss_mib": round(proc.status_kib(r.system.server.pid, "VmRSS") / 1024, 1),
                        **timed,
                    }
                )
                log(f"scrape: {r.system.name} after {r.recycled()} recycles: {timed['median_ms']} ms")
    finally:
        stop_all([p for r in running for p in (r.system.server, r.system.exporter) if p is not None])
    return results
