"""The arbiter's reads of its workers' ``/proc`` (worker health, issue 23): CPU per round of reads, at N workers.

Starts ``workers`` real child processes (Python interpreters that import the standard library's ``http.server``
and ``json``, start two threads and wait: about a worker's files, threads and descriptors) and times, with
``time.process_time`` (this process's CPU time, all threads), what the arbiter does at each report interval:
``ProcessHealth.take_readings`` (the reads of ``stat``, ``statm`` and the ``fd`` directory of each worker and of
itself, on the channel thread without the lock) and ``ProcessHealth.apply`` (the merge store under the lock), then
``metrics()`` (what a scrape reads). The figure that matters is the CPU of one round divided by the report interval:
the share of a core the reads take at the default 5 s.

Run ``.venv/bin/python bench/proc_reads.py [--workers 32] [--rounds 200]``; ``bench/inprocess.py`` calls
:func:`measure`. Every child is killed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the default report interval, at which the arbiter reads every worker once
INTERVAL = 5.0
#: what each child holds open: a listening socket, a few modules, two sleeping threads
_CHILD = """
import http.server, json, socket, sys, threading, time
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen()
for _ in range(2):
    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.read()
"""


def _children(count: int) -> list[subprocess.Popen[str]]:
    """``count`` children, each ready (it said so) before the next starts."""
    children = []
    try:
        for _ in range(count):
            child = subprocess.Popen(
                [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            children.append(child)
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError(f"child {child.pid} did not start")
    except BaseException:
        _stop(children)
        raise
    return children


def _stop(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        child.kill()
    for child in children:
        child.wait(timeout=10)


def _cpu_ms(run: Any, rounds: int) -> list[float]:
    """CPU milliseconds of each of ``rounds`` calls of ``run``."""
    found = []
    for _ in range(rounds):
        started = time.process_time()
        run()
        found.append((time.process_time() - started) * 1000)
    return found


def measure(workers: int = 32, rounds: int = 200) -> dict[str, Any]:
    """Median and p95 CPU ms per round of reads at ``workers`` workers, and the share of a core at 5 s (otel_gunicorn
    imported from ``sys.path``: ``bench/inprocess.py`` puts the measured checkout first)."""
    from otel_gunicorn._arbiter.process_health import ProcessHealth

    children = _children(workers)
    try:
        listed = {child.pid: slot for slot, child in enumerate(children)}
        health = ProcessHealth(INTERVAL)

        def read_only() -> None:
            health.take_readings(listed.items())

        def read_and_apply() -> None:
            health.apply(health.take_readings(listed.items()), listed)
            health.metrics()

        for run in (read_only, read_and_apply):  # warm up: imports, first merges
            run()
        reads = _cpu_ms(read_only, rounds)
        rounds_ms = _cpu_ms(read_and_apply, rounds)
        wall_started = time.perf_counter()
        read_and_apply()
        wall_ms = (time.perf_counter() - wall_started) * 1000
        failed = health.reads["failed"]
    finally:
        _stop(children)
    median = statistics.median(rounds_ms)
    return {
        "workers": workers,
        "rounds": rounds,
        "interval_s": INTERVAL,
        "reads_ms": {"median": statistics.median(reads), "p95": _p95(reads)},
        "round_ms": {"median": median, "p95": _p95(rounds_ms)},
        "round_wall_ms": wall_ms,
        "core_pct_at_interval": median / (INTERVAL * 1000) * 100,
        "failed_reads": failed,
    }


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=200)
    options = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    print(json.dumps(measure(options.workers, options.rounds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
