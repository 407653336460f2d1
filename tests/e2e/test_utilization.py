"""The utilisation signal under a load ramp, per worker class, with real gunicorn (issue 10, "Done when").

Each class serves ``service_time`` with a fixed service time: a 100 ms sleep for sync (2 workers) and gthread
(1 worker × 4 threads), 50 ms of CPU for the event-loop classes (1 worker: its capacity is the one core it runs on).
gthread runs one worker because with two, each accepting whatever it can, three requests on two workers of two
threads leave one waiting behind a busy thread while a thread of the other worker idles: p99 nearly doubles at
0.75× (docs/utilization.md, "gthread with several workers"), a property of gthread's accepting, not of the signal.
The offered load steps from ¼ to 3× capacity; each step is ``k`` closed-loop clients, each request on a new
connection with ``Connection: close`` (as nginx talks to its upstreams by default), and a think time that makes the
``k`` of them offer exactly the step's share while the server keeps up (0.25 × 2 workers: one client busy half of the
time). Per step: the mean of ``gunicorn_server_utilization`` once the step settled, and the p99 of the response times
the clients saw.

For the CPU-bound classes on this 2-core machine the worker runs on CPU 1, the arbiter and this process (clients,
scrapes) on CPU 0, so that the load generator does not steal the core the worker's latency depends on; the
affinities are restored after. The sleeping classes are left unpinned: their clients need the CPU instead, since
the time a client takes between two requests is time its worker idles (with a 100 ms sleep, a few ms of client time
already makes "1×" 0.95× of capacity).

Asserted: the signal is at most 0.6 at half capacity, reaches 0.9 at a step before the one from which p99 stays
doubled against the unloaded steps (¼ and ½), and stays at 0.9 or more at every overloaded step (above 1×). "Stays
doubled": load only grows along the ramp, so latency that load doubled stays doubled at every later step, while a
pause of the worker's garbage collector (measured: 45 ms for a full collection with the SDK loaded) doubles one
step's p99 of a hundred requests and not the next. ``pytest -s`` prints the table that docs/utilization.md shows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from harness import net
from harness.scrape import reports_at, wait_reports

pytestmark = pytest.mark.e2e

#: offered load per step, in multiples of the server's capacity
LEVELS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
#: seconds of load per step, and the first part of it not measured: a report (every 0.5 s) must cover the new load
STEP = 3.5
SETTLE = 1.0
#: seconds between two reads of the signal: not a multiple of the report interval, so that the reads do not lock
#: onto one phase of the workers' reports
SAMPLE = 0.3
INTERVAL = "0.5"
SIGNAL = re.compile(r"^gunicorn_server_utilization(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
CLOSE = (("Connection", "close"),)


@dataclasses.dataclass(frozen=True)
class Ramp:
    app: str
    args: tuple[str, ...]
    path: str
    service: float
    capacity: int
    pin: bool = False


RAMPS = {
    "sync": Ramp("service_time:app", ("-w", "2"), "/sleep?0.1", 0.1, 2),
    "gthread": Ramp("service_time:app", ("-k", "gthread", "-w", "1", "--threads", "4"), "/sleep?0.1", 0.1, 4),
    "gevent": Ramp("service_time:app", ("-k", "gevent", "-w", "1"), "/spin?0.05", 0.05, 1, pin=True),
    "asgi": Ramp("service_time:asgi_app", ("-k", "asgi", "-w", "1"), "/spin?0.05", 0.05, 1, pin=True),
    "uvicorn-worker": Ramp(
        "service_time:asgi_app", ("-k", "uvicorn_worker.UvicornWorker", "-w", "1"), "/spin?0.05", 0.05, 1, pin=True
    ),
}


@dataclasses.dataclass(frozen=True)
class Step:
    level: float
    clients: int
    signal: float
    p99: float
    requests: int


def clients(level: float, capacity: int, service: float) -> tuple[int, float]:
    """(clients, think time in seconds) that offer ``level`` × ``capacity`` concurrent requests of ``service`` s."""
    offered = level * capacity
    count = math.ceil(offered)
    duty = offered / count  # the share of its time each client has a request in flight
    return count, service * (1 / duty - 1)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def signal(server) -> float:
    """``gunicorn_server_utilization`` from one scrape, read with a regex: parsing the whole exposition several
    times a second would cost this process the CPU its clients need."""
    found = SIGNAL.search(server.scrape_text())
    assert found, "the signal is absent under load"
    return float(found[1])


def run_step(server, ramp: Ramp, level: float) -> Step:
    """Offer ``level`` × capacity for :data:`STEP` seconds; the signal and p99 measured after :data:`SETTLE`."""
    count, think = clients(level, ramp.capacity, ramp.service)
    stop = threading.Event()
    start = time.monotonic()
    measured_from = start + SETTLE
    latencies: list[float] = []

    def client() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            status, _ = net.get(server.port, ramp.path, headers=dict(CLOSE), timeout=30)
            assert 200 == status
            if sent >= measured_from:
                latencies.append(time.monotonic() - sent)
            if think:
                stop.wait(think)

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(SETTLE)
    signals = []
    while time.monotonic() < start + STEP:
        signals.append(signal(server))
        time.sleep(SAMPLE)
    stop.set()
    for thread in threads:
        thread.join(60)
    return Step(level, count, statistics.fmean(signals), p99(latencies), len(latencies))


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` on ``cpus`` (threads it starts later inherit the affinity of their creator)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def pinned(server, wanted: bool) -> Iterator[None]:
    """Workers on CPU 1, the arbiter and this thread (and the clients it starts) on CPU 0; restored afterwards."""
    if not wanted or (os.cpu_count() or 1) < 2:
        yield
        return
    before = os.sched_getaffinity(0)
    for pid in server.worker_pids():
        pin(pid, {1})
    pin(server.pid, {0})
    os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def table(name: str, steps: list[Step]) -> str:
    rows = [f"{name}: level | clients | utilization | p99 ms | requests"]
    rows += [f"  {s.level:g}× | {s.clients} | {s.signal:.2f} | {s.p99 * 1000:.0f} | {s.requests}" for s in steps]
    return "\n".join(rows)


@pytest.mark.parametrize("name", list(RAMPS))
def test_the_signal_follows_a_load_ramp(start_gunicorn, name):
    """¼ → 3× capacity: ≤ 0.6 at half, ≥ 0.9 before p99 doubles, ≥ 0.9 while overloaded."""
    ramp = RAMPS[name]
    server = start_gunicorn(ramp.app, args=list(ramp.args), env={"OTEL_GUNICORN_METRICS_INTERVAL": INTERVAL})
    assert ramp.capacity == server.wait_value("gunicorn_server_capacity", ramp.capacity)
    with pinned(server, ramp.pin):
        steps = [run_step(server, ramp, level) for level in LEVELS]
    print("\n" + table(name, steps))

    by_level = {s.level: s for s in steps}
    assert by_level[0.5].signal <= 0.6
    # at most half the capacity no request can wait: the better p99 of the two steps is the unloaded value
    unloaded = min(by_level[0.25].p99, by_level[0.5].p99)
    stays_doubled = [s.level for i, s in enumerate(steps) if all(t.p99 >= 2 * unloaded for t in steps[i:])]
    assert stays_doubled, "the ramp never overloaded the server"
    doubled = stays_doubled[0]
    assert any(s.signal >= 0.9 for s in steps if s.level < doubled), f"p99 doubled at {doubled}× first"
    assert all(s.signal >= 0.9 for s in steps if s.level > 1)


def test_an_idle_server_reads_zero_not_nothing(start_gunicorn):
    """Before any request the signal is 0 with its capacity, not absent (sync, 2 workers)."""
    server = start_gunicorn("service_time:app", args=["-w", "2"], env={"OTEL_GUNICORN_METRICS_INTERVAL": INTERVAL})
    assert 2 == server.wait_value("gunicorn_server_capacity", 2)
    # the readiness probe's few requests are all it served
    assert 0 <= server.value("gunicorn_server_utilization") < 0.05


def test_an_unknown_worker_class_has_no_signal(start_gunicorn):
    """A worker class otel_gunicorn does not know (not a subclass of one it knows): no utilisation or capacity,
    while the other metrics are served."""
    server = start_gunicorn(
        "service_time:app",
        args=["-k", "unknown_worker.UnknownWorker", "-w", "1"],
        env={"OTEL_GUNICORN_METRICS_INTERVAL": INTERVAL},
    )
    server.wait_value("gunicorn_worker_limit", 1)
    net.get(server.port, "/")
    wait_reports(reports_at(server.metrics_port), workers=1)  # the reports that would carry that request's signal
    scrape = server.scrape()
    assert (None, None) == (scrape.value("gunicorn_server_utilization"), scrape.value("gunicorn_server_capacity"))
