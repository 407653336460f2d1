"""The arbiter's work at scale, in one process: every report through the wire, every scrape through the endpoint.

Builds a real :class:`~otel_gunicorn._arbiter.runtime.ArbiterRuntime` around a fake gunicorn arbiter (as
``scrape_inprocess.py`` does) with ``workers`` live workers, each reporting ``counters`` counter series and
``histograms`` histogram series (attribute ``bench.kind`` with :data:`VALUES_PER_METRIC` values per metric, default
bucket boundaries, float sums) plus otel_gunicorn's own worker series. A report is what a worker sends: its
snapshot encoded as the worker encodes it (``payload_from_snapshot``, ``encode_frame``; not measured), then in the
arbiter what the channel thread does with the bytes (``FrameDecoder.feed``, ``snapshot_from_payload``,
``ArbiterRuntime.report``: measured). A scrape is the endpoint's WSGI call for ``/metrics`` (text format,
uncompressed: measured).

Two figures, in CPU time of this thread (steadier than wall time on a shared machine):

* ``report_ms``: one report's cost in the arbiter, every series changed since the worker's previous one, and
  ``report_same_ms``: the same report again (a server at rest keeps sending unchanged snapshots);
* ``scrape_ms``: one scrape right after every worker reported with every series changed, and ``scrape_cached_ms``:
  a scrape with nothing changed since the previous one.

``python bench/arbiter_inprocess.py --workers 32 --counters 1000 --histograms 100`` prints them;
``--profile report|scrape`` runs that part under cProfile instead and prints the top of the profile;
``--callgrind report|scrape`` runs only that part inside ``functools.reduce``, so that callgrind counts exactly
it (``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce``; see bench/findings.md).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the stand-ins for gunicorn's arbiter and a worker's heartbeat file, shared with the scrape measurement
from scrape_inprocess import Server as _Server
from scrape_inprocess import _Heartbeat

ROOT = Path(__file__).resolve().parents[1]
VALUES_PER_METRIC = 10


class Fleet:
    """A runtime and ``workers`` workers, each with ``counters`` counter and ``histograms`` histogram series."""

    def __init__(self, workers: int, counters: int, histograms: int, directory: str) -> None:
        from otel_gunicorn import _instruments as inst
        from otel_gunicorn._arbiter.runtime import ArbiterRuntime
        from otel_gunicorn._config import Config
        from otel_gunicorn._handoff import SLOT_ATTR
        from otel_gunicorn._otel_compat import SDK_DEFAULT_BOUNDARIES
        from otel_gunicorn._snapshot import HistogramValue, Kind, MetricMeta, payload_from_snapshot
        from otel_gunicorn._wire import FrameDecoder, FrameKind, encode_frame

        self._inst, self._slot_attr, self._hv = inst, SLOT_ATTR, HistogramValue
        self._payload, self._encode, self._kind = payload_from_snapshot, encode_frame, FrameKind.SNAPSHOT
        self._decoder_type = FrameDecoder
        self.server = _Server(workers)
        config = Config(metrics_exporters=frozenset({"prometheus"}), channel_dir=directory, prometheus_port=0)
        self.runtime = ArbiterRuntime(config, self.server)
        self._max = config.max_frame_bytes
        endpoint = self.runtime.endpoint
        assert endpoint is not None
        self.app: Callable[..., Any] = endpoint.app
        self._bounds = tuple(float(b) for b in SDK_DEFAULT_BOUNDARIES)
        scope = ("bench.scale", "1.0", "")
        values = [f"value-{v:02d}" for v in range(VALUES_PER_METRIC)]
        self._counter_series = [
            (MetricMeta(*scope, f"bench.events.{i:03d}", f"Bench counter number {i}.", "{event}", Kind.COUNTER), v)
            for i in range(max(1, counters // VALUES_PER_METRIC))
            for v in values
        ][:counters]
        self._histogram_series = [
            (MetricMeta(*scope, f"bench.latency.{i:02d}", f"Bench histogram number {i}.", "s", Kind.HISTOGRAM), v)
            for i in range(max(1, histograms // VALUES_PER_METRIC))
            for v in values
        ][:histograms]
        self._next_pid = 1000
        self._requests: dict[int, int] = {}
        self.frames: dict[int, bytes] = {}
        self.pids: list[int] = []
        for _ in range(workers):
            self._fork()

    def close(self) -> None:
        self.runtime.channel.stop()

    def _fork(self) -> None:
        worker = types.SimpleNamespace(pid=None, aborted=False, tmp=_Heartbeat())
        self.runtime.assign_slot(worker)
        pid = worker.pid = self._next_pid
        self._next_pid += 1
        self.server.WORKERS[pid] = worker
        self.runtime.connected(pid)
        self._requests[pid] = 0
        self.pids.append(pid)
        self.request(pid)
        self.deliver(pid)

    def snapshot(self, pid: int) -> Any:
        """The worker's cumulative snapshot after ``n`` requests, each adding to every series."""
        inst, n = self._inst, self._requests[pid]
        slot = getattr(self.server.WORKERS[pid], self._slot_attr)
        snap: dict[Any, dict[Any, Any]] = {}
        for meta, value in self._counter_series:
            snap.setdefault(meta, {})[(("bench.kind", value),)] = n
        for meta, value in self._histogram_series:
            snap.setdefault(meta, {})[(("bench.kind", value),)] = self._histogram(n)
        snap[inst.REPORTS_DROPPED.meta] = {(): 0}
        snap[inst.ACTIVE_REQUESTS.meta] = {((inst.SLOT_ATTRIBUTE, slot), ("http.request.method", "GET")): 0}
        key = (
            ("http.request.method", "GET"),
            ("http.response.status_code", 200),
            ("network.protocol.version", "1.1"),
            ("url.scheme", "http"),
        )
        snap[inst.REQUEST_DURATION.meta] = {key: self._histogram(n)}
        return snap

    def _histogram(self, n: int) -> Any:
        counts = [0] * (len(self._bounds) + 1)
        counts[1], counts[3] = n - n // 3, n // 3
        return self._hv(n, 0.0042 * n + 1e-9 * (n % 7), self._bounds, tuple(counts), 0.001, 0.009 + n * 1e-6)

    def request(self, pid: int) -> None:
        self._requests[pid] += 1
        self.frames[pid] = self._encode(self._kind, self._payload(self.snapshot(pid)))

    def deliver(self, pid: int) -> None:
        """What the channel thread does with the worker's latest frame (``ChannelServer._read``)."""
        from otel_gunicorn._snapshot import snapshot_from_payload

        decoder = self._decoder_type(self._max)
        (frame,) = decoder.feed(self.frames[pid])
        self.runtime.channel.stats.reports_received += 1
        self.runtime.report(pid, snapshot_from_payload(frame.payload))

    def scrape(self) -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/metrics",
            "QUERY_STRING": "",
            "wsgi.input": io.BytesIO(),
            "wsgi.url_scheme": "http",
        }
        status: list[str] = []
        body = b"".join(self.app(environ, lambda s, h, exc_info=None: status.append(s)))
        assert status == ["200 OK"], status
        return body


class PromOneProcess:
    """The same families in one process with prometheus_client (what a single-process server renders): a registry
    with ``counters`` counter series and ``histograms`` histogram series, shaped as :class:`Fleet`'s."""

    def __init__(self, counters: int, histograms: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.exposition import generate_latest

        from otel_gunicorn._otel_compat import SDK_DEFAULT_BOUNDARIES

        self._render = generate_latest
        self.registry = CollectorRegistry(auto_describe=False)
        values = [f"value-{v:02d}" for v in range(VALUES_PER_METRIC)]
        self._counters = []
        for i in range(max(1, counters // VALUES_PER_METRIC)):
            counter = Counter(
                f"bench_events_{i:03d}", f"Bench counter number {i}.", ["bench_kind"], registry=self.registry
            )
            self._counters += [counter.labels(bench_kind=v) for v in values]
        self._counters = self._counters[:counters]
        self._histograms = []
        for i in range(max(1, histograms // VALUES_PER_METRIC)):
            histogram = Histogram(
                f"bench_latency_{i:02d}_seconds",
                f"Bench histogram number {i}.",
                ["bench_kind"],
                registry=self.registry,
                buckets=tuple(SDK_DEFAULT_BOUNDARIES),
            )
            self._histograms += [histogram.labels(bench_kind=v) for v in values]
        self._histograms = self._histograms[:histograms]

    def request(self) -> None:
        for counter in self._counters:
            counter.inc()
        for histogram in self._histograms:
            histogram.observe(7.0)

    def scrape(self) -> bytes:
        return self._render(self.registry)


def _cpu(call: Callable[[], Any]) -> float:
    started = time.thread_time()
    call()
    return (time.thread_time() - started) * 1000.0


def measure(workers: int, counters: int, histograms: int, rounds: int = 5) -> dict[str, Any]:
    """Median CPU milliseconds of the arbiter's parts (see the module docstring) over ``rounds`` rounds."""
    with tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as directory:
        fleet = Fleet(workers, counters, histograms, directory)
        try:
            fleet.scrape()
            gc.collect()
            report, same, scrape, cached, size = [], [], [], [], 0
            for _ in range(rounds):
                for pid in fleet.pids:
                    fleet.request(pid)
                for pid in fleet.pids:
                    report.append(_cpu(lambda pid=pid: fleet.deliver(pid)))
                scrape.append(_cpu(fleet.scrape))
                cached.append(_cpu(fleet.scrape))
                for pid in fleet.pids[:4]:
                    same.append(_cpu(lambda pid=pid: fleet.deliver(pid)))
                size = len(fleet.scrape())
        finally:
            fleet.close()
    return {
        "workers": workers,
        "counters": counters,
        "histograms": histograms,
        "report_ms": round(statistics.median(report), 3),
        "report_same_ms": round(statistics.median(same), 3),
        "scrape_ms": round(statistics.median(scrape), 2),
        "scrape_cached_ms": round(statistics.median(cached), 2),
        "body_bytes": size,
    }


def _run_part(fleet: Fleet, part: str, rounds: int, before: Callable[[], None], after: Callable[[], None]) -> None:
    for _ in range(rounds):
        for pid in fleet.pids:
            fleet.request(pid)
        if part == "report":
            before()
            for pid in fleet.pids:
                fleet.deliver(pid)
            after()
        else:
            for pid in fleet.pids:
                fleet.deliver(pid)
            before()
            fleet.scrape()
            after()


def profile(workers: int, counters: int, histograms: int, part: str, rounds: int, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as directory:
        fleet = Fleet(workers, counters, histograms, directory)
        try:
            fleet.scrape()
            profiler = cProfile.Profile()
            _run_part(fleet, part, rounds, profiler.enable, profiler.disable)
        finally:
            fleet.close()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def callgrind(workers: int, counters: int, histograms: int, part: str, rounds: int) -> None:
    """Run ``part`` ``rounds`` times, each inside ``functools.reduce``: callgrind started with
    ``--collect-atstart=no --toggle-collect=functools_reduce`` counts those calls and nothing else."""
    with tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as directory:
        fleet = Fleet(workers, counters, histograms, directory)
        try:
            fleet.scrape()

            def run_inside_reduce(work: Callable[[], None]) -> None:
                functools.reduce(lambda _acc, call: call(), [work], None)

            if part == "prom":
                prom = PromOneProcess(counters, histograms)
                for _ in range(rounds):
                    prom.request()
                    run_inside_reduce(lambda: prom.scrape() and None)
            elif part == "report":
                for _ in range(rounds):
                    for pid in fleet.pids:
                        fleet.request(pid)
                    run_inside_reduce(lambda: [fleet.deliver(pid) for pid in fleet.pids])
            else:
                for _ in range(rounds):
                    for pid in fleet.pids:
                        fleet.request(pid)
                    for pid in fleet.pids:
                        fleet.deliver(pid)
                    run_inside_reduce(fleet.scrape)
        finally:
            fleet.close()
    print(f"{part}: {rounds} rounds of {workers} workers x ({counters} + {histograms}) series counted")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--counters", type=int, default=1000, help="counter series per worker")
    parser.add_argument("--histograms", type=int, default=100, help="histogram series per worker")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", choices=("report", "scrape"))
    parser.add_argument("--callgrind", choices=("report", "scrape", "prom"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--package-root", type=Path, default=ROOT, help="where to import otel_gunicorn from")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.package_root))
    if args.callgrind:
        callgrind(args.workers, args.counters, args.histograms, args.callgrind, args.rounds)
    elif args.profile:
        profile(args.workers, args.counters, args.histograms, args.profile, args.rounds, args.top)
    else:
        print(measure(args.workers, args.counters, args.histograms, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
