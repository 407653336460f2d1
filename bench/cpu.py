"""Figure 1 (CPU per request), 4 (channel cost at rest), 5 (the OTLP exporter process) and the memory of figure 3.

For one worker class, every setup of ``configs.setups`` is started (one worker each) and pinned, every thread of
arbiter, workers and otel_gunicorn's exporter process, to CPU 1, with the load generator (``wrk -t1``) on CPU 0 and
the collector on CPU 0. Then, after a warm-up, ``rounds`` rounds: in each, ``wrk -d SECONDS`` against every setup in
turn (the order rotates by one setup each round, so no setup always follows the same one). A setup's figure for a
round is the CPU time (utime + stime from ``/proc``) of its arbiter and workers during its wrk run divided by the
requests wrk counted; the page gives the median over the rounds. A round where a worker was replaced, or where wrk
saw errors, is kept in the raw numbers but left out of the median.

With ``idle_seconds``, the servers are then left without traffic and their CPU rates read over that window, all at
once (from the threads' on-CPU nanoseconds rather than ticks): a worker's rate under otel_gunicorn minus a bare
worker's is what reporting to the arbiter costs (the channel), at the default interval (OTEL_GUNICORN_METRICS_INTERVAL
unset: 5 s). Last, every process's memory.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import configs
from bench.server import Server, can_pin, cpu_seconds, exec_seconds, pin, stop_all
from bench.server import collector as start_collector
from harness import net
from harness.waiting import wait_until

_REQUESTS = re.compile(r"(\d+) requests in")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk(port: int, connections: int, seconds: int, pinned: bool) -> dict[str, Any]:
    """One ``wrk -t1`` run (on CPU 0 when ``pinned``): requests counted and errors."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian package wrk; `make bench` installs it)")
    line = [binary, "-t1", f"-c{connections}", f"-d{seconds}s", f"http://{net.LOOPBACK}:{port}/"]
    if pinned:
        line = ["taskset", "-c", "0", *line]
    run = subprocess.run(line, capture_output=True, text=True, timeout=seconds + 30)
    match = _REQUESTS.search(run.stdout)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    errors = 0
    for pattern in (_SOCKET_ERRORS, _NON_2XX):
        found = pattern.search(run.stdout)
        errors += sum(int(n) for n in found.groups()) if found else 0
    return {"requests": int(match.group(1)), "errors": errors}


def measure_round(server: Server, worker_class: configs.WorkerClass, seconds: int, pinned: bool) -> dict[str, Any]:
    workers = server.worker_pids()
    exporter = server.exporter_pid()
    if pinned:
        pin(server.tree(), 1)
    arbiter0, workers0 = cpu_seconds([server.pid]), cpu_seconds(workers)
    exporter0 = cpu_seconds([exporter]) if exporter else 0.0
    started = time.monotonic()
    run = wrk(server.port, worker_class.connections, seconds, pinned)
    elapsed = time.monotonic() - started
    arbiter = cpu_seconds([server.pid]) - arbiter0
    worker_cpu = cpu_seconds(workers) - workers0
    exporter_cpu = (cpu_seconds([exporter]) - exporter0) if exporter else None
    requests = max(run["requests"], 1)
    replaced = server.worker_pids() != workers
    return {
        "requests": run["requests"],
        "errors": run["errors"],
        "requests_per_s": round(run["requests"] / elapsed),
        "cpu_s": round(arbiter + worker_cpu, 3),
        "us_per_request": round((arbiter + worker_cpu) / requests * 1e6, 2),
        "arbiter_us_per_request": round(arbiter / requests * 1e6, 2),
        "exporter_cpu_s": None if exporter_cpu is None else round(exporter_cpu, 3),
        "seconds": round(elapsed, 2),
        "valid": not replaced and run["errors"] == 0 and run["requests"] > 0,
        "worker_replaced": replaced,
    }


def _median(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r["valid"] and r[key] is not None]
    return round(statistics.median(values), 2) if values else None


def _exporter(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The OTLP exporter process's CPU over all valid rounds together: it pushes every few seconds, so one round's
    share is mostly 0 or one tick, and a median would hide it."""
    valid = [r for r in rounds if r["valid"] and r.get("exporter_cpu_s") is not None]
    if not valid:
        return {"exporter_us_per_request": None, "exporter_pct": None}
    cpu_s = sum(r["exporter_cpu_s"] for r in valid)
    return {
        "exporter_us_per_request": round(cpu_s / max(1, sum(r["requests"] for r in valid)) * 1e6, 2),
        "exporter_pct": round(100 * cpu_s / sum(r["seconds"] for r in valid), 3),
    }


def idle_rates(servers: dict[str, Server], seconds: float) -> dict[str, Any]:
    """CPU rates (% of one core) of every server's arbiter, workers (per worker) and exporter over one window, all
    servers at once, from the threads' on-CPU time in nanoseconds (see :func:`bench.server.exec_seconds`)."""
    before = {}
    for key, server in servers.items():
        workers, exporter = server.worker_pids(), server.exporter_pid()
        before[key] = (
            workers,
            exporter,
            exec_seconds([server.pid]),
            exec_seconds(workers),
            exec_seconds([exporter]) if exporter else 0.0,
        )
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    rates: dict[str, Any] = {}
    for key, server in servers.items():
        workers, exporter, arbiter0, workers0, exporter0 = before[key]
        if server.worker_pids() != workers:
            rates[key] = {"valid": False}
            continue
        rates[key] = {
            "valid": True,
            "seconds": round(elapsed, 1),
            "arbiter_pct": round(100 * (exec_seconds([server.pid]) - arbiter0) / elapsed, 4),
            "worker_pct": round(100 * (exec_seconds(workers) - workers0) / elapsed / len(workers), 4),
            "exporter_pct": round(100 * (exec_seconds([exporter]) - exporter0) / elapsed, 4) if exporter else None,
        }
    return rates


def run_class(
    worker_class: configs.WorkerClass,
    setups: list[configs.Setup],
    workdir: Path,
    *,
    rounds: int,
    seconds: int,
    idle_seconds: float,
    warmup: bool = True,
    package_root: Path,
    log: Any,
) -> dict[str, Any]:
    """Every setup of one worker class side by side; see the module docstring."""
    pinned = can_pin()
    started_at = time.monotonic()
    servers: dict[str, Server] = {}
    collector: Any = None
    with tempfile.TemporaryDirectory(prefix=f"bench-{worker_class.key}-", dir=workdir) as tmp:
        try:
            if any(s.configuration.needs_collector for s in setups):
                collector = start_collector(Path(tmp))
                if pinned:
                    pin([collector.pid], 0)
            for setup in setups:
                multiproc = None
                if setup.configuration.multiproc_dir:
                    multiproc = Path(tmp) / f"multiproc-{setup.configuration.key}-{setup.variant}"
                    multiproc.mkdir()
                metrics_port = net.free_port() if setup.configuration.metrics_endpoint else None
                servers[setup.key] = Server(
                    Path(tmp),
                    f"{worker_class.key}-{setup.configuration.key}-{setup.variant}",
                    setup.app,
                    config=setup.configuration.config,
                    workers=1,
                    args=worker_class.args,
                    env=setup.env(
                        collector_endpoint=collector.endpoint("http/protobuf") if collector else None,
                        multiproc_dir=multiproc,
                        metrics_port=metrics_port,
                    ),
                    metrics_port=metrics_port,
                    package_root=package_root,
                )
            for server in servers.values():
                server.wait_ready()
            # OTLP mode: the exporter process starts with the arbiter's channel; wait for it to be there
            for setup in setups:
                if setup.configuration.key == "otlp":
                    wait_until(servers[setup.key].exporter_pid, 20, what="otel_gunicorn's exporter process")
            if pinned:
                for server in servers.values():
                    pin(server.tree(), 1)
            log(f"{worker_class.key}: {len(servers)} servers up")
            if warmup:
                for server in servers.values():
                    wrk(server.port, worker_class.connections, 1, pinned)
            per_setup: dict[str, list[dict[str, Any]]] = {key: [] for key in servers}
            order = list(servers)
            for r in range(rounds):
                turn = order[r % len(order) :] + order[: r % len(order)]
                for key in turn:
                    per_setup[key].append(measure_round(servers[key], worker_class, seconds, pinned))
                log(f"{worker_class.key}: round {r + 1}/{rounds} done")
            idle = idle_rates(servers, idle_seconds) if idle_seconds else None
            mem = {key: server.memory() for key, server in servers.items()}
            collector_rss = None
            if collector is not None:
                from harness import proc

                collector_rss = round(proc.status_kib(collector.pid, "VmRSS") / 1024, 1)
        finally:
            stop_all([*servers.values(), *([collector] if collector else [])])

    results: dict[str, Any] = {}
    for setup in setups:
        rows = per_setup[setup.key]
        results[setup.key] = {
            "configuration": setup.configuration.key,
            "variant": setup.variant,
            "app": setup.app,
            "rounds": rows,
            "valid_rounds": sum(1 for r in rows if r["valid"]),
            "us_per_request": _median(rows, "us_per_request"),
            "arbiter_us_per_request": _median(rows, "arbiter_us_per_request"),
            **_exporter(rows),
            "requests_per_s": _median(rows, "requests_per_s"),
        }
    bare = results.get("bare/hello", {}).get("us_per_request")
    for row in results.values():
        value = row["us_per_request"]
        row["overhead_pct"] = round(100 * (value / bare - 1), 1) if bare and value else None
    return {
        "label": worker_class.label,
        "args": list(worker_class.args),
        "wrk_connections": worker_class.connections,
        "pinned": pinned,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "setups": results,
        "idle": idle,
        "memory": mem,
        "collector_rss_mib": collector_rss,
        "elapsed_s": round(time.monotonic() - started_at, 1),
    }
