"""In-process scrape benchmark: the arbiter's ``/metrics`` WSGI call, without sockets, other processes or HTTP.

Builds a real :class:`~otel_gunicorn._arbiter.runtime.ArbiterRuntime` around a fake gunicorn arbiter, feeds it
``workers`` workers' reports shaped like ``bench/apps/manyseries.py`` (counters x 4 attribute values, one histogram
x 4, plus the series otel_gunicorn's own worker side reports), then times the endpoint's WSGI application for
``/metrics`` in the Prometheus text format and in OpenMetrics (what Prometheus 3 asks for), uncompressed. Every
figure is the median (and p95) in milliseconds of ``scrapes`` calls, wall time and the scraping thread's CPU time
(steadier on a busy machine), in these situations between two scrapes:

* ``idle``: one worker (round robin) re-sent its unchanged cumulative snapshot, as a server without traffic does;
* ``few``: one worker reported after a request that recorded one counter (4 series) and otel_gunicorn's request
  duration histogram;
* ``all``: every worker reported with every series changed (the worst case: nothing can be reused);

with ``workers`` live workers, after ``recycles`` workers have exited and been replaced (their totals retired: the
exposition must not grow). The arbiter's own series (heartbeat ages, channel counters) move at every scrape.

Run ``.venv/bin/python bench/scrape_inprocess.py`` (``--package-root DIR`` measures another checkout of
otel_gunicorn, e.g. ``git archive HEAD otel_gunicorn | tar -x -C /tmp/old``); ``bench/inprocess.py`` calls
:func:`measure`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

VALUES = ("alpha", "beta", "gamma", "delta")
#: what a Prometheus 3 server sends (OpenMetrics chosen) and what curl sends (text)
ACCEPT = {
    "text": None,
    "openmetrics": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
}
SITUATIONS = ("idle", "few", "all")


class _Heartbeat:
    def __init__(self) -> None:
        self._at = time.monotonic()

    def last_update(self) -> float:
        return self._at


class Server:
    """What the runtime reads of gunicorn's arbiter."""

    def __init__(self, workers: int) -> None:
        self.WORKERS: dict[int, Any] = {}
        self.LISTENERS: list[Any] = []
        self.num_workers = workers
        self.worker_class = type("SyncWorker", (), {"__module__": "gunicorn.workers.sync"})


class Fleet:
    """A runtime with ``workers`` live workers reporting ``series`` app series each (plus otel_gunicorn's own)."""

    def __init__(self, workers: int, series: int, directory: str) -> None:
        from otel_gunicorn._arbiter.runtime import ArbiterRuntime
        from otel_gunicorn._config import Config

        self._m = _modules()
        self.server = Server(workers)
        config = Config(metrics_exporters=frozenset({"prometheus"}), channel_dir=directory, prometheus_port=0)
        self.runtime = ArbiterRuntime(config, self.server)
        endpoint = self.runtime.endpoint
        assert endpoint is not None
        self.app: Callable[..., Any] = getattr(endpoint, "app", None) or endpoint._served
        self._next_pid = 1000
        self._counters = max(0, (series - 4) // 4)
        self._requests: dict[int, int] = {}
        self._counts: dict[int, list[int]] = {}
        self._pids: list[int] = []
        for _ in range(workers):
            self._fork()

    def close(self) -> None:
        self.runtime.channel.stop()

    # ---------------------------------------------------------------- workers' lives

    def _fork(self) -> int:
        worker = types.SimpleNamespace(pid=None, aborted=False, tmp=_Heartbeat())
        self.runtime.assign_slot(worker)
        pid = worker.pid = self._next_pid
        self._next_pid += 1
        self.server.WORKERS[pid] = worker
        self.runtime.connected(pid)
        self._requests[pid] = 1
        self._counts[pid] = [1] * (self._counters + 1)  # per counter, then the latency histogram
        self._pids.append(pid)
        self.report(pid)
        return pid

    def recycle(self, times: int) -> None:
        """``times`` times: the oldest worker reports a last time, says goodbye, exits and is replaced."""
        for _ in range(times):
            pid = self._pids.pop(0)
            self.request(pid)
            self.report(pid)
            self.runtime.goodbye(pid, "normal")
            self.runtime.disconnected(pid, running=False)
            worker = self.server.WORKERS.pop(pid)
            self.runtime.worker_exited(worker)
            del self._requests[pid], self._counts[pid]
            self._fork()

    # ---------------------------------------------------------------- reports

    def snapshot(self, pid: int) -> Any:
        """The worker's cumulative snapshot."""
        m = self._m
        n = self._requests[pid]
        counts = self._counts[pid]
        slot = getattr(self.server.WORKERS[pid], m.SLOT_ATTR)
        snap: dict[Any, dict[Any, Any]] = {}
        scope = ("bench.manyseries", "1.0", "")
        for i in range(self._counters):
            meta = m.MetricMeta(*scope, f"bench.events.{i:02d}", f"Bench counter number {i}.", "{event}", m.COUNTER)
            snap[meta] = {(("bench.kind", v),): counts[i] for v in VALUES}
        latency = m.MetricMeta(*scope, "bench.latency", "Time spent per request.", "s", m.HISTOGRAM)
        snap[latency] = {(("bench.kind", v),): _histogram(m, counts[-1], m.DEFAULT_BOUNDS) for v in VALUES}
        snap[m.REPORTS_DROPPED] = {(): 0}
        snap[m.ACTIVE_REQUESTS] = {((m.SLOT_ATTRIBUTE, slot), ("http.request.method", "GET")): 0}
        key = (
            ("http.request.method", "GET"),
            ("http.response.status_code", 200),
            ("network.protocol.version", "1.1"),
            ("url.scheme", "http"),
        )
        snap[m.REQUEST_DURATION] = {key: _histogram(m, n, m.DURATION_BOUNDS)}
        snap[m.CONCURRENCY] = {(): 0.0}
        return snap

    def report(self, pid: int) -> None:
        self.runtime.channel.stats.reports_received += 1
        self.runtime.report(pid, self.snapshot(pid))

    def request(self, pid: int, counter: int | None = None) -> None:
        """``pid`` served a request recording every series (``counter``: only that counter's 4 series)."""
        self._requests[pid] += 1
        counts = self._counts[pid]
        for i in range(len(counts)) if counter is None else (counter,):
            counts[i] += 1

    def between_scrapes(self, situation: str, round_: int) -> None:
        """What happens between two scrapes (see the module docstring)."""
        if situation == "idle":
            self.report(self._pids[round_ % len(self._pids)])
        elif situation == "few":
            pid = self._pids[round_ % len(self._pids)]
            self.request(pid, counter=round_ % max(1, self._counters))
            self.report(pid)
        else:
            for pid in self._pids:
                self.request(pid)
                self.report(pid)

    # ---------------------------------------------------------------- one scrape

    def scrape(self, accept: str | None) -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/metrics",
            "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
        }
        if accept is not None:
            environ["HTTP_ACCEPT"] = accept
        status: list[str] = []
        body = b"".join(self.app(environ, lambda s, h, exc_info=None: status.append(s)))
        assert status == ["200 OK"], status
        return body


def _histogram(m: Any, n: int, bounds: tuple[float, ...]) -> Any:
    counts = [0] * (len(bounds) + 1)
    counts[1] = n
    return m.HistogramValue(n, 0.0042 * n, bounds, tuple(counts), 0.001, 0.009)


def _modules() -> Any:
    from otel_gunicorn import _instruments as inst
    from otel_gunicorn._handoff import SLOT_ATTR
    from otel_gunicorn._snapshot import HistogramValue, Kind, MetricMeta

    return types.SimpleNamespace(
        MetricMeta=MetricMeta,
        HistogramValue=HistogramValue,
        COUNTER=Kind.COUNTER,
        HISTOGRAM=Kind.HISTOGRAM,
        SLOT_ATTR=SLOT_ATTR,
        SLOT_ATTRIBUTE=inst.SLOT_ATTRIBUTE,
        REPORTS_DROPPED=inst.REPORTS_DROPPED.meta,
        ACTIVE_REQUESTS=inst.ACTIVE_REQUESTS.meta,
        REQUEST_DURATION=inst.REQUEST_DURATION.meta,
        CONCURRENCY=inst.CONCURRENCY.meta,
        DEFAULT_BOUNDS=tuple(
            float(b) for b in (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
        ),
        DURATION_BOUNDS=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    )


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p95": p95}


def _time_scrapes(fleet: Fleet, situation: str, accept: str | None, scrapes: int) -> tuple[dict[str, float], int]:
    """Median and p95 of the wall time and of the CPU time (this thread's) of ``scrapes`` scrapes, and the size."""
    wall, cpu = [], []
    size = 0
    fleet.scrape(accept)  # warm
    for round_ in range(scrapes):
        fleet.between_scrapes(situation, round_)
        started, started_cpu = time.perf_counter(), time.thread_time()
        size = len(fleet.scrape(accept))
        cpu.append((time.thread_time() - started_cpu) * 1000.0)
        wall.append((time.perf_counter() - started) * 1000.0)
    stats = _stats(wall)
    cpu_stats = _stats(cpu)
    return {**stats, "cpu": cpu_stats["median"], "cpu_p95": cpu_stats["p95"]}, size


def measure(workers: int, series_per_worker: int, scrapes: int, recycles: int = 0) -> dict[str, Any]:
    """Median milliseconds of one ``/metrics`` WSGI call, by format and situation (see the module docstring).

    Returns ``{"text": {"idle": ms, "few": ms, "all": ms}, "openmetrics": {...}}`` (wall time), with
    ``"p95"`` (wall), ``"cpu"`` and ``"cpu_p95"`` (CPU time of the scraping thread, steadier on a busy machine) in
    the same shape, and ``"bytes"``: the body size by format. Measured after ``recycles`` workers exited and were
    replaced.
    """
    result: dict[str, Any] = {"p95": {}, "cpu": {}, "cpu_p95": {}, "bytes": {}}
    with tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as directory:
        fleet = Fleet(workers, series_per_worker, directory)
        try:
            fleet.recycle(recycles)
            gc.collect()
            for fmt, accept in ACCEPT.items():
                result[fmt] = {}
                for situation in SITUATIONS:
                    stats, size = _time_scrapes(fleet, situation, accept, scrapes)
                    result[fmt][situation] = stats["median"]
                    for key in ("p95", "cpu", "cpu_p95"):
                        result[key].setdefault(fmt, {})[situation] = stats[key]
                    result["bytes"][fmt] = size
        finally:
            fleet.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=100, help="scrapes per figure (default 100)")
    parser.add_argument("--recycles", type=int, default=1000, help="worker recycles for the 'recycled' rows")
    parser.add_argument("--package-root", type=Path, default=ROOT, help="where to import otel_gunicorn from")
    parser.add_argument("--workers", type=int, nargs="*", default=[8, 16], help="live workers (default 8 16)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.package_root))
    importlib.invalidate_caches()
    import otel_gunicorn

    print(f"otel_gunicorn from {Path(otel_gunicorn.__file__).parent}")
    print("ms per /metrics WSGI call: wall median (p95) / CPU median; 100 series per worker")
    print(f"{'workers':>7} {'recycled':>8} {'format':>11} {'bytes':>6}" + "".join(f" {s:>21}" for s in SITUATIONS))
    for workers in args.workers:
        for recycles in (0, args.recycles):
            result = measure(workers, 100, args.scrapes, recycles=recycles)
            for fmt in ACCEPT:
                cells = "".join(
                    f" {result[fmt][s]:6.2f} ({result['p95'][fmt][s]:6.2f}) /{result['cpu'][fmt][s]:5.2f}"
                    for s in SITUATIONS
                )
                print(f"{workers:>7} {recycles:>8} {fmt:>11} {result['bytes'][fmt]:>6}{cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
