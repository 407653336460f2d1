"""Worker health from outside the worker (issue 23, "Done when"): memory, CPU, threads and descriptors per worker
slot, read by the arbiter from /proc, and the garbage collector from inside the worker, with real gunicorn.

sync ``-w 2`` serving ``tests/e2e/apps/health.py``, the report interval 1 s (the arbiter reads /proc at the same
interval). What a slot shows is compared with the worker process itself, read from /proc by the test
(harness.proc, its own reader).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time

import pytest

from harness import proc
from harness.prometheus import promtool_check
from harness.scrape import Exposition
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

INTERVAL = 1.0
SYNC = ["-w", "2"]
MIB = 1 << 20
RSS = "process_memory_usage_bytes"
CPU = "process_cpu_time_seconds_total"
READS = "otel_gunicorn_process_reads_total"
SLOT = "gunicorn_worker_slot"
#: the five process families and their kinds as the endpoint exposes them
PROCESS_FAMILIES = {
    RSS: "gauge",
    "process_memory_virtual_bytes": "gauge",
    CPU: "counter",
    "process_threads": "gauge",
    "process_unix_file_descriptors": "gauge",
}


@pytest.fixture
def server(start_gunicorn):
    return start_gunicorn("health:app", args=SYNC, env={"OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL)}, workers=2)


def per_slot(scrape: Exposition, name: str, **labels: str) -> dict[str, float]:
    """slot -> value of the workers' series of ``name`` (the arbiter's, without a slot, left out)."""
    found: dict[str, float] = {}
    for sample in scrape.samples(name):
        slot = sample.labels.get(SLOT, "")
        if slot and all(sample.labels.get(k) == v for k, v in labels.items()):
            found[slot] = found.get(slot, 0.0) + sample.value
    return found


def rss(server) -> dict[str, float]:
    return per_slot(server.scrape(), RSS)


def user_cpu(server) -> dict[str, float]:
    return per_slot(server.scrape(), CPU, cpu_mode="user")


def both_slots(values: dict[str, float]) -> bool:
    return set(values) == {"0", "1"}


def vmrss(pid: int) -> float:
    return proc.rss_kib(pid) * 1024.0


def test_kept_memory_shows_in_exactly_one_slot_and_agrees_with_the_kernel(server):
    """/grow keeping 200 MiB: within two intervals one slot rises by 190 MB or more, the other does not, and the
    slot's value is within 10 % of that worker's VmRSS; killed, the worker's slot (reused by its replacement) falls
    back below 150 MB."""
    before = wait_until(lambda: rss(server), 10, what="both slots' memory", until=both_slots)
    status, body = server.get("/grow?200")
    assert 200 == status
    pid = int(body)

    def risen(values: dict[str, float]) -> bool:
        return both_slots(values) and any(values[s] - before[s] >= 190e6 for s in values)

    after = wait_until(lambda: rss(server), 2 * INTERVAL, what="a slot 190 MB up within two intervals", until=risen)
    [grown] = [slot for slot in after if after[slot] - before[slot] >= 190e6]
    [other] = [slot for slot in after if slot != grown]
    assert after[other] - before[other] < 50e6
    assert after[grown] == pytest.approx(vmrss(pid), rel=0.10)

    cpu_before = user_cpu(server)[grown]
    os.kill(pid, signal.SIGKILL)
    replaced = wait_until(
        lambda: rss(server),
        15,
        what=f"slot {grown} back under 150 MB after its worker (pid {pid}) was killed",
        until=lambda values: grown in values and values[grown] < 150e6,
    )
    assert pid not in server.worker_pids() and both_slots(replaced)
    assert user_cpu(server)[grown] >= cpu_before  # the killed worker's CPU time stays in its slot


def test_burnt_cpu_shows_in_the_slots_user_time(server):
    """/burn of 1 s of CPU raises the serving slot's user CPU time by at least 0.7 s."""
    before = wait_until(lambda: user_cpu(server), 10, what="both slots' CPU time", until=both_slots)
    status, body = server.get("/burn?1")
    assert 200 == status
    wait_until(
        lambda: user_cpu(server),
        2 * INTERVAL + 1,
        what="a slot's user CPU time up by 0.7 s",
        until=lambda values: both_slots(values) and any(values[s] - before[s] >= 0.7 for s in values),
    )


def test_a_workers_cpu_time_to_its_end_is_counted_when_it_exits(start_gunicorn):
    """With reads 30 s apart, a worker burns 1 s of CPU and is killed before the arbiter read it again: its time,
    taken from the kernel when the arbiter reaps it, is in its slot at once, with no round of reads in between."""
    server = start_gunicorn("health:app", args=SYNC, env={"OTEL_GUNICORN_METRICS_INTERVAL": "30"}, workers=2)
    first = wait_until(server.scrape, 5, what="the first round of reads", until=lambda s: s.value(READS))
    status, body = server.get("/burn?1")
    assert 200 == status
    os.kill(int(body), signal.SIGKILL)
    before = per_slot(first, CPU, cpu_mode="user")

    def burnt(scrape: Exposition) -> bool:
        values = per_slot(scrape, CPU, cpu_mode="user")
        return any(value - before.get(slot, 0.0) >= 0.7 for slot, value in values.items())

    after = wait_until(server.scrape, 5, what="the killed worker's CPU time in its slot", until=burnt)
    assert first.value(READS) == after.value(READS)  # no round of reads since: it came with the reaping


def test_a_worker_holding_its_gil_is_still_measured(server):
    """During a request holding the GIL for 6 s (no thread of the worker runs, so it sends no report), its slot is
    still read: its memory within 10 % of VmRSS and its CPU time rising from one read to the next."""
    wait_until(lambda: user_cpu(server), 10, what="both slots' CPU time", until=both_slots)
    pids = server.worker_pids()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        holding = pool.submit(server.get, "/hold?6", 20)
        start = time.monotonic()
        # the holder is the worker burning CPU (the other one sleeps in accept)
        base = {pid: proc.cpu_seconds(pid) for pid in pids}
        busy = wait_until(
            lambda: {pid for pid in pids if proc.cpu_seconds(pid) - base[pid] >= 0.3},
            5,
            what="the worker holding the GIL using CPU",
            until=lambda running: len(running) == 1,
        )
        [pid] = busy
        first = user_cpu(server)
        reads = []
        while time.monotonic() - start < 5.0:  # two reads of the slot, at least one interval apart, inside the 6 s
            time.sleep(INTERVAL)  # pacing: one scrape per read interval
            scrape = server.scrape()
            reads.append((per_slot(scrape, CPU, cpu_mode="user"), per_slot(scrape, RSS), vmrss(pid)))
        status, body = holding.result()
    assert (200, pid) == (status, int(body))
    # the holder's slot used the most CPU meanwhile (up to a core for 5 s; the other worker sleeps in accept)
    slot = max(first, key=lambda s: reads[-1][0][s] - first[s])
    cpu_series = [first[slot]] + [read[0][slot] for read in reads]
    assert all(b > a for a, b in zip(cpu_series[:-2], cpu_series[2:])), cpu_series  # rising within two reads
    assert all(read[1][slot] == pytest.approx(read[2], rel=0.10) for read in reads)


def test_garbage_raises_the_slots_gc_collections_and_the_pause_histogram(server):
    """/garbage making 200 000 cyclic objects and calling gc.collect() raises the serving slot's generation-2
    collections and the pause histogram's count."""
    scrape = server.scrape()
    before = per_slot(scrape, "cpython_gc_collections_total", cpython_gc_generation="2")
    pauses = scrape.value("gunicorn_worker_gc_pause_duration_seconds_count", cpython_gc_generation="2") or 0.0
    status, _ = server.get("/garbage?200000")
    assert 200 == status

    def collected(scrape: Exposition) -> bool:
        after = per_slot(scrape, "cpython_gc_collections_total", cpython_gc_generation="2")
        count = scrape.value("gunicorn_worker_gc_pause_duration_seconds_count", cpython_gc_generation="2") or 0.0
        return any(after[s] > before.get(s, 0.0) for s in after) and count > pauses

    wait_until(server.scrape, 2 * INTERVAL + 1, what="a generation-2 collection counted and timed", until=collected)


def test_a_slots_gc_and_cpu_counters_survive_its_workers_replacement(server):
    """A worker that collected garbage exits gracefully (TERM) and is replaced: its slot's collections and CPU time
    never go down, through the replacement and after it."""
    status, body = server.get("/garbage?1000")
    assert 200 == status
    pid = int(body)

    def gen2(scrape: Exposition) -> dict[str, float]:
        return per_slot(scrape, "cpython_gc_collections_total", cpython_gc_generation="2")

    seen = wait_until(
        lambda: gen2(server.scrape()),
        2 * INTERVAL + 1,
        what="a slot's gen-2 collection",
        until=lambda v: any(v.values()),
    )
    [slot] = [s for s, count in seen.items() if count]
    cpu_before = user_cpu(server)[slot]
    os.kill(pid, signal.SIGTERM)
    history = []

    def replaced() -> set[int]:
        scrape = server.scrape()
        history.append((gen2(scrape).get(slot), per_slot(scrape, CPU, cpu_mode="user").get(slot)))
        return server.worker_pids()

    wait_until(replaced, 15, what=f"worker {pid} replaced", until=lambda pids: pid not in pids and len(pids) == 2)
    wait_until(lambda: rss(server), 2 * INTERVAL + 1, what="the replacement read", until=both_slots)
    after = server.scrape()
    history.append((gen2(after).get(slot), per_slot(after, CPU, cpu_mode="user").get(slot)))
    counts = [seen[slot]] + [count for count, _ in history]
    cpus = [cpu_before] + [cpu for _, cpu in history]
    assert None not in counts and counts == sorted(counts), counts
    assert None not in cpus and cpus == sorted(cpus), cpus


def test_the_arbiters_own_series_are_there_and_promtool_accepts_the_five_families(server):
    """The arbiter's memory series (no slot) is its own VmRSS; the five process families pass promtool check
    metrics and are typed as the semantic conventions' instruments map."""
    scrape = wait_until(
        server.scrape, 10, what="the arbiter's memory", until=lambda s: s.value(RSS, **{SLOT: ""}) is not None
    )
    assert scrape.value(RSS, **{SLOT: ""}) == pytest.approx(vmrss(server.pid), rel=0.10)
    families = [line for line in scrape.text.splitlines() if metric_name(line) in PROCESS_FAMILIES]
    for name, kind in PROCESS_FAMILIES.items():
        assert f"# TYPE {name} {kind}" in families
    for text in ("\n".join(families) + "\n", scrape.text):  # the five on their own, and the whole scrape
        result = promtool_check(text)
        assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


def metric_name(line: str) -> str:
    """The metric a line of the text exposition is about (a HELP or TYPE line's, or a sample's)."""
    if line.startswith("# "):
        return line.split(" ")[2]
    return line.split("{")[0].split(" ")[0]
