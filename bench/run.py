"""otel_gunicorn benchmarks: scrape cost, scrape cost after recycling, worker memory, CPU per request.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``). Starts real gunicorn masters on 127.0.0.1 with free
ports (through the repository's ``harness`` package, as the end-to-end tests do), prints a table and writes
``bench/results/latest.json``. Every load loop is bounded by a request count and a deadline, and every server is
stopped at the end, also on failure or Ctrl-C. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
APPS = Path(__file__).resolve().parent / "apps"
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import gunicorn  # noqa: E402

from harness import proc  # noqa: E402
from harness.gunicorn import OTEL_CONFIG, Gunicorn  # noqa: E402
from harness.process import Fleet  # noqa: E402
from harness.scrape import fetch  # noqa: E402
from harness.waiting import wait_until  # noqa: E402

INTERVAL = 1.0  # OTEL_GUNICORN_METRICS_INTERVAL for every server
#: where the servers import otel_gunicorn from (``--package-root``): this checkout unless told otherwise
PACKAGE_ROOT = ROOT
SCRAPES = 50


# ---------------------------------------------------------------- a gunicorn master


def start_server(workdir: Path, name: str, app: str, *, workers: int, otel: bool, args: tuple = ()) -> Gunicorn:
    """One gunicorn master with ``workers`` workers running, with (``otel=True``) or without otel_gunicorn's config."""
    return Gunicorn(
        workdir,
        app,
        name=name,
        args=args,
        workers=workers,
        config=OTEL_CONFIG if otel else None,
        wait_metrics=otel,
        env={"OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL)},
        apps=APPS,
        package_root=PACKAGE_ROOT,
    )


def load(server: Gunicorn, requests: int, concurrency: int, deadline: float, path: str = "/") -> tuple[int, int, set]:
    """Send up to ``requests`` requests from ``concurrency`` threads, stopping at ``deadline`` (monotonic).

    Returns (successful requests, failed requests, worker pids seen in the bodies).
    """

    def one(_i: int) -> tuple[bool, bytes]:
        if time.monotonic() > deadline:
            return False, b"deadline"
        try:
            status, body = server.get(path)
        except (OSError, http.client.HTTPException) as exc:
            return False, repr(exc).encode()
        return status == 200, body

    ok = failed = 0
    pids = set()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for success, body in pool.map(one, range(requests)):
            if success:
                ok += 1
                pids.add(int(body.split()[-1]))
            elif body != b"deadline":
                failed += 1
    return ok, failed, pids


def time_scrapes(server: Gunicorn, count: int = SCRAPES) -> dict[str, Any]:
    """``count`` sequential scrapes: client wall time, the arbiter's CPU time net of its idle rate, body size."""
    idle_window = 3.0
    cpu0, t0 = proc.cpu_seconds(server.pid), time.monotonic()
    time.sleep(idle_window)
    cpu1, t1 = proc.cpu_seconds(server.pid), time.monotonic()
    idle_rate = (cpu1 - cpu0) / (t1 - t0)
    durations = []
    body = b""
    for _ in range(count):
        seconds, body = fetch(server.metrics_port, timeout=10)
        durations.append(seconds)
    cpu2, t2 = proc.cpu_seconds(server.pid), time.monotonic()
    durations_ms = sorted(d * 1000 for d in durations)
    raw = (cpu2 - cpu1) / count
    net = ((cpu2 - cpu1) - idle_rate * (t2 - t1)) / count
    samples = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "scrapes": count,
        "median_ms": round(statistics.median(durations_ms), 2),
        "p95_ms": round(durations_ms[math.ceil(0.95 * count) - 1], 2),  # nearest rank
        "min_ms": round(durations_ms[0], 2),
        "arbiter_cpu_ms_per_scrape": round(net * 1000, 2),
        "arbiter_cpu_ms_per_scrape_raw": round(raw * 1000, 2),
        "arbiter_idle_cpu_ms_per_s": round(idle_rate * 1000, 2),
        "body_bytes": len(body),
        "samples": samples,
    }


def wait_counted(server: Gunicorn, expected: int, timeout: float) -> float | None:
    """Wait until the merged ``bench_events_00_total{bench_kind="alpha"}`` is ``expected``; return the last value."""
    last: list[float | None] = [None]

    def check() -> bool:
        last[0] = server.value("bench_events_00_total", bench_kind="alpha")
        return last[0] == expected

    with contextlib.suppress(AssertionError):
        wait_until(check, timeout, interval=0.25, what="the merged count")
    return last[0]


# ---------------------------------------------------------------- the figures


def bench_scrape_8_workers(start: Callable[..., Gunicorn]) -> dict[str, Any]:
    server = start("scrape8", "manyseries:app", workers=8, otel=True)
    sent = 0
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < 8 and sent < 2000 and time.monotonic() < deadline:
        ok, _failed, pids = load(server, 32, 8, deadline)
        sent += ok
        seen |= pids
    merged = wait_counted(server, sent, 4 * INTERVAL + 5)
    time.sleep(2 * INTERVAL)
    result = {
        "workers": 8,
        "workers_that_recorded": len(seen),
        "requests": sent,
        "merged_count": merged,
        **time_scrapes(server),
        "arbiter_rss_mib": round(proc.status_kib(server.pid, "VmRSS") / 1024, 1),
    }
    server.stop()
    return result


def bench_scrape_after_recycles(start: Callable[..., Gunicorn], target: int = 300) -> dict[str, Any]:
    server = start("recycle", "manyseries:app", workers=2, otel=True, args=("--max-requests", "2"))
    deadline = time.monotonic() + 30
    fresh_sent, _f, _p = load(server, 2, 1, deadline)
    wait_counted(server, fresh_sent, 4 * INTERVAL + 5)
    time.sleep(2 * INTERVAL)
    fresh_rss = proc.status_kib(server.pid, "VmRSS")
    fresh = time_scrapes(server)
    booted_before = server.booted()

    sent, failed, pids = fresh_sent, 0, set[int]()
    deadline = time.monotonic() + 120
    while server.booted() - booted_before < target and sent < 4 * target and time.monotonic() < deadline:
        ok, bad, seen = load(server, 100, 2, deadline)
        sent, failed, pids = sent + ok, failed + bad, pids | seen
    recycles = server.booted() - booted_before
    merged = wait_counted(server, sent, 4 * INTERVAL + 5)
    time.sleep(2 * INTERVAL)
    after_rss = proc.status_kib(server.pid, "VmRSS")
    after = time_scrapes(server)
    result = {
        "recycles": recycles,
        "distinct_worker_pids_that_answered": len(pids),
        "requests": sent,
        "failed_requests": failed,
        "merged_count": merged,
        "fresh": fresh,
        "after": after,
        "arbiter_rss_mib_fresh": round(fresh_rss / 1024, 1),
        "arbiter_rss_mib_after": round(after_rss / 1024, 1),
    }
    server.stop()
    return result


def memory(server: Gunicorn) -> dict[str, Any]:
    workers = sorted(server.worker_pids())
    return {
        "worker_vmrss_mib": [round(proc.status_kib(p, "VmRSS") / 1024, 2) for p in workers],
        "worker_rssanon_mib": [round(proc.status_kib(p, "RssAnon") / 1024, 2) for p in workers],
        "worker_pss_mib": [round(proc.pss_kib(p) / 1024, 2) for p in workers],
        "arbiter_vmrss_mib": round(proc.status_kib(server.pid, "VmRSS") / 1024, 2),
    }


def bench_rss_and_cpu(start: Callable[..., Gunicorn], rounds: int, seconds: int) -> dict[str, Any]:
    bare = start("hello-bare", "hello:app", workers=2, otel=False)
    otel = start("hello-otel", "hello:app", workers=2, otel=True)
    deadline = time.monotonic() + 30
    for server in (bare, otel):
        load(server, 400, 4, deadline)
    time.sleep(2 * INTERVAL + 0.5)  # the otel workers have reported at least twice
    mem = {"bare": memory(bare), "otel": memory(otel)}
    for side in mem.values():
        for key in ("worker_vmrss_mib", "worker_rssanon_mib", "worker_pss_mib"):
            side[key.replace("worker_", "median_worker_")] = round(statistics.median(side[key]), 2)
    diff = {
        key: round(mem["otel"][f"median_worker_{key}"] - mem["bare"][f"median_worker_{key}"], 2)
        for key in ("vmrss_mib", "rssanon_mib", "pss_mib")
    }
    result: dict[str, Any] = {"memory": mem, "memory_difference_mib": diff}

    wrk = shutil.which("wrk")
    if wrk is None or rounds == 0:
        result["cpu"] = None
        return result
    per_round: dict[str, list[dict[str, Any]]] = {"bare": [], "otel": []}
    for _ in range(rounds):  # interleaved, so both see the same machine noise
        for name, server in (("bare", bare), ("otel", otel)):
            per_round[name].append(cpu_under_wrk(wrk, server, seconds))
    cpu: dict[str, Any] = {"rounds": per_round}
    for name in ("bare", "otel"):
        cpu[f"{name}_us_per_request"] = round(statistics.median(r["us_per_request"] for r in per_round[name]), 1)
        cpu[f"{name}_master_us_per_request"] = round(
            statistics.median(r["master_us_per_request"] for r in per_round[name]), 1
        )
        cpu[f"{name}_requests_per_s"] = round(statistics.median(r["requests_per_s"] for r in per_round[name]), 0)
    cpu["overhead_percent"] = round(100 * (cpu["otel_us_per_request"] / cpu["bare_us_per_request"] - 1), 1)
    result["cpu"] = cpu
    return result


def _pin(pids: list[int], cpu: int) -> None:
    """Pin every thread of ``pids`` to one CPU: with the load generator on the other, the two stop competing."""
    for pid in pids:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(task), {cpu})
            except OSError:
                pass  # a thread that just ended


def cpu_under_wrk(wrk: str, server: Gunicorn, seconds: int) -> dict[str, Any]:
    workers = server.worker_pids()
    pids = [server.pid, *workers]
    pinned = (os.cpu_count() or 1) >= 2
    if pinned:  # gunicorn on CPU 1, wrk on CPU 0: far less noise than letting them share both
        _pin(pids, 1)
    master_before = proc.cpu_seconds(server.pid)
    before = sum(proc.cpu_seconds(p) for p in pids)
    run = subprocess.run(
        [wrk, "-t1", "-c4", f"-d{seconds}s", f"http://127.0.0.1:{server.port}/"],
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pinned else None,  # noqa: PLW1509 - no threads in bench
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    after = sum(proc.cpu_seconds(p) for p in pids)
    master = proc.cpu_seconds(server.pid) - master_before
    match = re.search(r"(\d+) requests in", run.stdout)
    if run.returncode != 0 or match is None:
        raise AssertionError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    requests = int(match.group(1))
    errors = re.search(r"Socket errors:.*|Non-2xx.*", run.stdout)
    if server.worker_pids() != workers:
        raise AssertionError(f"{server.name}: a worker was replaced during the CPU measurement")
    return {
        "requests": requests,
        "requests_per_s": round(requests / seconds, 0),
        "cpu_s": round(after - before, 3),
        "us_per_request": round((after - before) / requests * 1e6, 1),
        "master_us_per_request": round(master / requests * 1e6, 1),
        "wrk_errors": errors.group(0) if errors else None,
    }


# ---------------------------------------------------------------- in-process costs


def bench_hook_cost(requests: int = 50_000) -> dict[str, Any]:
    """CPU of otel_gunicorn's pre_request + post_request work per request, in this process, against the OTel SDK's
    own ``counter.add`` for scale. Deterministic enough on a noisy machine: no sockets, no other process."""
    sys.path.insert(0, str(PACKAGE_ROOT))
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_gunicorn._worker.request_stats import RequestStats
    from otel_gunicorn._worker.requests import RequestObserver
    from otel_gunicorn._worker.tracing import RequestTracing

    class Request:
        method, path, query, scheme, version = "GET", "/", "", "http", (1, 1)
        headers = [("HOST", "127.0.0.1"), ("USER-AGENT", "wrk"), ("ACCEPT", "*/*")]

    class Response:
        status_code = 200

    def cpu_us(loop: Callable[[], None], n: int) -> float:
        loop()  # warm-up: caches, first-use allocations
        started = time.process_time()
        loop()
        return round((time.process_time() - started) / n * 1e6, 2)

    observer = RequestObserver(RequestStats(), 0, RequestTracing(None))
    requests_list = [Request() for _ in range(requests)]
    response = Response()

    def hooks() -> None:
        for req in requests_list:
            observer.started(req)
            observer.finished(req, response)

    counter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench").create_counter("c")

    def sdk_adds() -> None:
        for _ in range(requests):
            counter.add(1)

    return {"requests": requests, "hooks_us": cpu_us(hooks, requests), "sdk_counter_add_us": cpu_us(sdk_adds, requests)}


# ---------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))

    def change(side_a: Any, side_b: Any, unit: str) -> str:
        return f"{side_a} -> {side_b} {unit}"

    s = results.get("scrape_8_workers")
    if s:
        row(
            f"1. scrape, 8 workers x ~100 series ({s['samples']} samples, {s['body_bytes'] // 1024} KiB): median",
            f"{s['median_ms']} ms",
        )
        row("   p95", f"{s['p95_ms']} ms")
        row("   arbiter CPU per scrape (net of idle)", f"{s['arbiter_cpu_ms_per_scrape']} ms")
        row("   arbiter CPU while idle (receiving 8 reports/s)", f"{s['arbiter_idle_cpu_ms_per_s']} ms/s")
        row(
            "   workers that recorded; merged count = requests",
            f"{s['workers_that_recorded']}; {s['merged_count']:g} = {s['requests']}",
        )
    r = results.get("scrape_after_recycles")
    if r:
        fresh, after = r["fresh"], r["after"]
        row(
            f"2. scrape, -w 2 --max-requests 2: median fresh -> after {r['recycles']} recycles",
            change(fresh["median_ms"], after["median_ms"], "ms"),
        )
        row("   p95 fresh -> after", change(fresh["p95_ms"], after["p95_ms"], "ms"))
        row(
            "   arbiter CPU per scrape fresh -> after",
            change(fresh["arbiter_cpu_ms_per_scrape"], after["arbiter_cpu_ms_per_scrape"], "ms"),
        )
        row(
            "   arbiter CPU while idle fresh -> after",
            change(fresh["arbiter_idle_cpu_ms_per_s"], after["arbiter_idle_cpu_ms_per_s"], "ms/s"),
        )
        row("   samples per scrape fresh -> after", change(fresh["samples"], after["samples"], ""))
        row("   arbiter VmRSS fresh -> after", change(r["arbiter_rss_mib_fresh"], r["arbiter_rss_mib_after"], "MiB"))
        row(
            "   merged count = requests (failed requests)",
            f"{r['merged_count']:g} = {r['requests']} ({r['failed_requests']})",
        )
    m = results.get("rss_and_cpu")
    if m:
        bare, otel, diff = m["memory"]["bare"], m["memory"]["otel"], m["memory_difference_mib"]
        for label, key in (
            ("3. worker VmRSS (median of 2)", "vmrss_mib"),
            ("   worker RssAnon", "rssanon_mib"),
            ("   worker Pss", "pss_mib"),
        ):
            row(
                f"{label}, bare -> otel_gunicorn",
                change(bare[f"median_worker_{key}"], otel[f"median_worker_{key}"], f"MiB ({diff[key]:+})"),
            )
        row(
            "   arbiter VmRSS, bare -> otel_gunicorn",
            change(bare["arbiter_vmrss_mib"], otel["arbiter_vmrss_mib"], "MiB"),
        )
        c = m.get("cpu")
        if c:
            row(
                "4. CPU per request (master+workers), bare -> otel_gunicorn",
                change(c["bare_us_per_request"], c["otel_us_per_request"], f"us ({c['overhead_percent']:+}%)"),
            )
            row(
                "   of which the master (arbiter), bare -> otel_gunicorn",
                change(c["bare_master_us_per_request"], c["otel_master_us_per_request"], "us"),
            )
            row(
                "   throughput under wrk -t1 -c4, bare -> otel_gunicorn",
                change(f"{c['bare_requests_per_s']:.0f}", f"{c['otel_requests_per_s']:.0f}", "req/s"),
            )
    h = results.get("hook_cost")
    if h:
        row("5. pre_request + post_request hooks, CPU per request (in process)", f"{h['hooks_us']} us")
        row("   for scale: one OTel SDK counter.add() without attributes", f"{h['sdk_counter_add_us']} us")
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)


def environment() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            run = subprocess.run(["git", *args], cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=10)
        except OSError:
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "otel_gunicorn")
    return {
        "package_root": str(PACKAGE_ROOT),
        "git_commit": git("rev-parse", "HEAD"),
        "package_modified_since_commit": None if dirty is None else bool(dirty),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "metrics_interval_s": INTERVAL,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer recycles and one short CPU round (smoke test)")
    parser.add_argument(
        "--package-root",
        type=Path,
        default=ROOT,
        help="directory holding the otel_gunicorn package to measure (default: this checkout), e.g. an older export",
    )
    options = parser.parse_args(argv)
    global PACKAGE_ROOT
    PACKAGE_ROOT = options.package_root.resolve()
    if not (PACKAGE_ROOT / "otel_gunicorn" / "conf.py").is_file():
        parser.error(f"{PACKAGE_ROOT} holds no otel_gunicorn package")
    recycles, rounds, seconds = (20, 1, 2) if options.quick else (300, 5, 4)

    started_at = time.monotonic()
    results: dict[str, Any] = {"environment": environment()}
    with (
        tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as tmp,
        Fleet(lambda *args, **kwargs: start_server(Path(tmp), *args, **kwargs)) as start,
    ):
        for key, run in (
            ("scrape_8_workers", lambda: bench_scrape_8_workers(start)),
            ("scrape_after_recycles", lambda: bench_scrape_after_recycles(start, recycles)),
            ("rss_and_cpu", lambda: bench_rss_and_cpu(start, rounds, seconds)),
            ("hook_cost", bench_hook_cost),
        ):
            phase = time.monotonic()
            print(f"[bench] {key} ...", file=sys.stderr, flush=True)
            results[key] = run()
            results[key]["elapsed_s"] = round(time.monotonic() - phase, 1)
    results["elapsed_s"] = round(time.monotonic() - started_at, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n{results['elapsed_s']} s; details in {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
