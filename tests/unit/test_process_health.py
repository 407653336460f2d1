"""Unit tests for the workers' process metrics the arbiter reads from /proc (otel_gunicorn._arbiter.process_health).

The reader and the clock are injected: each test says what /proc shows and when. The rules under test are the
module's docstring's; the merge rules they rely on are the merge store's (tests/unit/test_merge.py).
"""

from __future__ import annotations

import dataclasses
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.semconv._incubating.attributes.cpu_attributes import CPU_MODE, CpuModeValues
from opentelemetry.semconv._incubating.attributes.cpython_attributes import CPYTHON_GC_GENERATION
from opentelemetry.semconv._incubating.metrics import cpython_metrics, process_metrics

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.process_health import (
    ABSENCE_GRACE,
    CpuTimes,
    ProcessHealth,
    ReapedChildren,
    final_cpu,
)
from otel_gunicorn._probes.process import CLOCK_TICKS, PAGE_SIZE, ProcessMemory, ProcessReading, ProcessStat
from otel_gunicorn._snapshot import Kind
from tests.unit.clock import Clock

ARBITER = 100
SLOT = inst.SLOT_ATTRIBUTE
MODE = inst.CPU_MODE_ATTRIBUTE


@dataclasses.dataclass
class FakeProc:
    """What /proc shows: per pid, CPU ticks, resident pages, threads, descriptors, state and start time."""

    processes: dict[int, dict] = dataclasses.field(default_factory=dict)

    def set(self, pid, user=0, system=0, pages=1000, threads=1, fds=5, state="S", start=1) -> None:
        self.processes[pid] = {
            "user": user,
            "system": system,
            "pages": pages,
            "threads": threads,
            "fds": fds,
            "state": state,
            "start": start,
        }

    def read(self, pid: int) -> ProcessReading | None:
        found = self.processes.get(pid)
        if found is None:
            return None
        stat = ProcessStat(found["state"], ARBITER, found["user"], found["system"], found["threads"], found["start"])
        if found["state"] == "Z":
            return ProcessReading(stat, None, None)
        return ProcessReading(stat, ProcessMemory(found["pages"] * 10, found["pages"]), found["fds"])


@pytest.fixture
def proc():
    found = FakeProc()
    found.set(ARBITER, user=300, system=100, pages=2000, threads=3, fds=15)
    return found


@pytest.fixture
def clock():
    return Clock(0.0)


@pytest.fixture
def health(proc, clock):
    return ProcessHealth(5.0, clock=clock, read=proc.read, own_pid=ARBITER, cpus=2)


def read_round(health: ProcessHealth, workers: dict[int, int]) -> None:
    """One round of reads of ``workers`` (pid -> slot), all of them still listed when it is applied."""
    health.apply(health.take_readings(workers.items()), set(workers))


def points(health: ProcessHealth, instrument: inst.Instrument) -> dict:
    return dict(health.metrics().get(instrument.meta, {}))


def cpu(health: ProcessHealth, slot: int | None, mode: str = "user") -> float | None:
    key = ((MODE, mode), (SLOT, slot)) if slot is not None else ((MODE, mode),)
    return points(health, inst.PROCESS_CPU_TIME).get(key)


def memory(health: ProcessHealth, slot: int | None) -> float | None:
    return points(health, inst.PROCESS_MEMORY_USAGE).get(((SLOT, slot),) if slot is not None else ())


# ---------------------------------------------------------------- names


def test_names_are_the_installed_semantic_conventions():
    """Every process and GC metric and attribute is spelled as opentelemetry-semantic-conventions spells it."""
    assert [
        process_metrics.PROCESS_MEMORY_USAGE,
        process_metrics.PROCESS_MEMORY_VIRTUAL,
        process_metrics.PROCESS_CPU_TIME,
        process_metrics.PROCESS_THREAD_COUNT,
        process_metrics.PROCESS_UNIX_FILE_DESCRIPTOR_COUNT,
        cpython_metrics.CPYTHON_GC_COLLECTIONS,
        cpython_metrics.CPYTHON_GC_COLLECTED_OBJECTS,
        cpython_metrics.CPYTHON_GC_UNCOLLECTABLE_OBJECTS,
        CPU_MODE,
        CPYTHON_GC_GENERATION,
        CpuModeValues.USER.value,
        CpuModeValues.SYSTEM.value,
    ] == [
        inst.PROCESS_MEMORY_USAGE.name,
        inst.PROCESS_MEMORY_VIRTUAL.name,
        inst.PROCESS_CPU_TIME.name,
        inst.PROCESS_THREADS.name,
        inst.PROCESS_DESCRIPTORS.name,
        inst.GC_COLLECTIONS.name,
        inst.GC_COLLECTED.name,
        inst.GC_UNCOLLECTABLE.name,
        inst.CPU_MODE_ATTRIBUTE,
        inst.GC_GENERATION_ATTRIBUTE,
        "user",
        "system",
    ]


def test_the_endpoint_renames_only_the_count_gauges():
    """for_prometheus renames thread and descriptor counts, keeps every other metric and the points dicts."""
    threads = {((SLOT, 0),): 4}
    cpu_points = {((MODE, "user"), (SLOT, 0)): 1.0}
    renamed = inst.for_prometheus({inst.PROCESS_CPU_TIME.meta: cpu_points, inst.PROCESS_THREADS.meta: threads})
    assert [inst.PROCESS_CPU_TIME.meta, inst.PROCESS_THREADS.meta._replace(name="process.threads")] == list(renamed)
    assert renamed[inst.PROCESS_THREADS.meta._replace(name="process.threads")] is threads
    assert ["process_threads", "process_unix_file_descriptors"] == [
        inst.prometheus_name(inst.PROCESS_THREADS),
        inst.prometheus_name(inst.PROCESS_DESCRIPTORS),
    ]


# ---------------------------------------------------------------- readings


def test_a_worker_is_labelled_with_its_slot_and_the_arbiter_with_none(health, proc):
    """Memory, CPU, threads and descriptors of a worker carry its slot; the arbiter's series carry no slot."""
    proc.set(7, user=250, system=50, pages=3000, threads=4, fds=12)
    read_round(health, {7: 0})
    metrics = health.metrics()
    assert {((SLOT, 0),): 3000 * PAGE_SIZE, (): 2000 * PAGE_SIZE} == metrics[inst.PROCESS_MEMORY_USAGE.meta]
    assert {((SLOT, 0),): 30000 * PAGE_SIZE, (): 20000 * PAGE_SIZE} == metrics[inst.PROCESS_MEMORY_VIRTUAL.meta]
    assert {((SLOT, 0),): 4, (): 3} == metrics[inst.PROCESS_THREADS.meta]
    assert {((SLOT, 0),): 12, (): 15} == metrics[inst.PROCESS_DESCRIPTORS.meta]
    assert (250 / CLOCK_TICKS, 50 / CLOCK_TICKS) == (cpu(health, 0), cpu(health, 0, "system"))
    assert (300 / CLOCK_TICKS, 100 / CLOCK_TICKS) == (cpu(health, None), cpu(health, None, "system"))


def test_kinds_follow_the_merge_rules():
    """CPU time is a counter (kept across replacements); memory, threads and descriptors are summed over the live."""
    assert [Kind.COUNTER] + [Kind.UPDOWNCOUNTER] * 4 == [
        i.kind
        for i in (
            inst.PROCESS_CPU_TIME,
            inst.PROCESS_MEMORY_USAGE,
            inst.PROCESS_MEMORY_VIRTUAL,
            inst.PROCESS_THREADS,
            inst.PROCESS_DESCRIPTORS,
        )
    ]


def test_a_failed_read_leaves_the_worker_absent_and_is_counted(health, proc):
    """A listed worker /proc does not show has no series at all (never 0), and the failure is counted."""
    read_round(health, {7: 0})
    assert (None, None) == (memory(health, 0), cpu(health, 0))
    assert {(("outcome", "read"),): 1, (("outcome", "failed"),): 1} == points(health, inst.PROCESS_READS)


def test_unreadable_descriptors_are_absent_not_zero(health, proc):
    """A worker whose fd directory cannot be read has memory and CPU series but no descriptor series."""
    proc.set(7, fds=None)
    read_round(health, {7: 0})
    assert memory(health, 0) is not None
    assert ((SLOT, 0),) not in points(health, inst.PROCESS_DESCRIPTORS)


def test_a_worker_without_a_slot_is_not_read(health, proc):
    """A worker gunicorn forked without our pre_fork has no slot: its series would mix with the arbiter's."""
    proc.set(7)
    assert [ARBITER] == [pid for pid, _slot, _reading in health.take_readings([(7, None)])]


def test_a_zombie_keeps_its_cpu_time_and_loses_its_memory(health, proc):
    """Exited but not reaped: its CPU time (final) is kept, its memory, threads and descriptors are gone."""
    proc.set(7, user=100, pages=3000)
    read_round(health, {7: 0})
    proc.set(7, user=120, state="Z")
    read_round(health, {7: 0})
    assert (1.2, None) == (cpu(health, 0), memory(health, 0))


def test_a_reading_applied_after_the_worker_was_reaped_is_dropped(health, proc, clock):
    """Read while listed, reaped (its exit settled) before the reading is applied: the reading would count twice."""
    proc.set(7, user=100)
    read_round(health, {7: 0})
    proc.set(7, user=200)
    readings = health.take_readings([(7, 0)])
    clock.now += 5
    health.exited(7, 0, CpuTimes(2.0, 0.0))
    health.apply(readings, set())
    assert (2.0, None) == (cpu(health, 0), memory(health, 0))


# ---------------------------------------------------------------- exits and replacements


def test_a_replaced_workers_cpu_time_stays_in_its_slot(health, proc, clock):
    """Slot 0's CPU time is its first worker's final time plus its replacement's: it never goes down."""
    proc.set(7, user=500, system=100, pages=50_000)
    read_round(health, {7: 0})
    clock.now += 3
    health.exited(7, 0, CpuTimes(5.5, 1.2))  # the kernel's account at the reaping: half a second more in user mode
    proc.set(8, user=20, system=10, pages=9_000)
    read_round(health, {8: 0})
    assert (5.7, 1.3) == (pytest.approx(cpu(health, 0)), pytest.approx(cpu(health, 0, "system")))
    assert 9_000 * PAGE_SIZE == memory(health, 0)


def test_the_reaped_time_is_ignored_when_it_holds_another_childs(health, proc, clock):
    """More CPU than the worker could have used since its last read (2 CPUs × 3 s): its last reading is kept."""
    proc.set(7, user=500, system=100)
    read_round(health, {7: 0})
    clock.now += 3
    health.exited(7, 0, CpuTimes(300.0, 1.0))
    assert (5.0, 1.0) == (cpu(health, 0), cpu(health, 0, "system"))


def test_a_worker_that_died_before_its_first_read_still_counts(health, proc, clock):
    """Forked and reaped between two rounds: its CPU time comes from the reaping alone, under its slot."""
    read_round(health, {})
    clock.now += 1
    health.exited(9, 1, CpuTimes(0.4, 0.1))
    assert (0.4, 0.1) == (cpu(health, 1), cpu(health, 1, "system"))
    assert memory(health, 1) is None


def test_an_unlisted_worker_loses_its_memory_at_once_and_retires_after_the_grace(health, proc, clock):
    """A pid gunicorn stopped listing without our child_exit: memory gone at the next round, CPU kept for good."""
    proc.set(7, user=100, pages=3000)
    read_round(health, {7: 0})
    clock.now += 5
    read_round(health, {})
    assert (1.0, None) == (cpu(health, 0), memory(health, 0))
    clock.now += ABSENCE_GRACE + 5
    read_round(health, {})
    assert [] == health.store.worker_pids[1:]  # only the arbiter is still held
    assert 1.0 == cpu(health, 0)


def test_a_reused_pid_retires_the_previous_process_first(health, proc, clock):
    """The same pid with another start time is another process: the first one's CPU time is kept, not replaced."""
    proc.set(7, user=300, start=1)
    read_round(health, {7: 0})
    proc.set(7, user=50, start=2)
    read_round(health, {7: 0})
    assert 3.5 == cpu(health, 0)


def test_reads_are_due_every_interval(health, clock):
    """A round is due at once, then one interval after each round."""
    assert health.seconds_until_due() <= 0
    health.take_readings([])
    clock.now += 2
    assert 3.0 == health.seconds_until_due()


def test_reaped_children_gives_the_time_reaped_since_the_previous_call():
    """Each take returns what the account grew by since the previous take (or since it was made)."""
    account = iter([CpuTimes(1.0, 0.5), CpuTimes(3.0, 0.75), CpuTimes(3.0, 0.75)])
    reaped = ReapedChildren(read=lambda: next(account))
    assert [CpuTimes(2.0, 0.25), CpuTimes(0.0, 0.0)] == [reaped.take(), reaped.take()]


# ---------------------------------------------------------------- properties

SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False)
TIMES = st.builds(CpuTimes, SECONDS, SECONDS)


@given(last=st.none() | TIMES, reaped=st.none() | TIMES, elapsed=st.floats(0, 3600), cpus=st.integers(1, 256))
def test_the_final_cpu_time_is_the_last_reading_or_a_plausible_reaped_one(last, reaped, elapsed, cpus):
    """Whatever the kernel's account says, the final time is the last reading or the reaped time; each mode ends at
    least where it was last read, and the total grows by no more than the elapsed time on every CPU (plus /proc's
    rounding)."""
    final = final_cpu(last, reaped, elapsed, cpus)
    assert final in (last, reaped)
    if last is not None:
        assert final is not None
        assert final.user >= last.user and final.system >= last.system
        assert final.total <= last.total + elapsed * cpus + 2 / CLOCK_TICKS
    elif final is not None:
        assert final.total <= elapsed * cpus


@given(
    last=TIMES,
    extra=st.builds(CpuTimes, st.floats(0, 5), st.floats(0, 5)),
    elapsed=st.floats(10, 100),
)
def test_a_plausible_reaped_time_is_taken(last, extra, elapsed):
    """Reaped time at or above the last reading and within what one CPU could do since: taken as it is."""
    reaped = CpuTimes(last.user + extra.user, last.system + extra.system)
    assert reaped == final_cpu(last, reaped, elapsed, 1)


#: one step of a slot's life: a read showing this much more CPU (ticks), or the worker's exit with this much more
STEPS = st.lists(st.tuples(st.sampled_from(["read", "exit"]), st.integers(0, 50), st.integers(0, 1)), max_size=40)


@given(steps=STEPS)
def test_a_slots_cpu_time_is_the_sum_of_its_workers_and_never_decreases(steps):
    """Over any sequence of reads, exits and replacements on two slots, each slot's CPU time equals the final times
    of its past workers plus its current worker's last reading, and never decreases from one round to the next."""
    clock, proc = Clock(0.0), FakeProc()
    proc.set(ARBITER)
    health = ProcessHealth(1.0, clock=clock, read=proc.read, own_pid=ARBITER, cpus=1)
    pids = {0: 10, 1: 1000}  # a replacement takes pid + 1: the slots' pids never meet within STEPS' 40 steps
    used = {pid: 0 for pid in pids.values()}
    expected = {0: 0.0, 1: 0.0}  # the past workers' final times, per slot
    last_read = {0: 0.0, 1: 0.0}  # the current worker's CPU time at the latest round that read it
    seen = {0: 0.0, 1: 0.0}
    for action, ticks, slot in steps:
        clock.now += 1.0
        pid = pids[slot]
        used[pid] += ticks
        if action == "read":
            proc.set(pid, user=used[pid])
            read_round(health, {p: s for s, p in pids.items()})
            for each, current_pid in pids.items():
                if current_pid in proc.processes:  # a worker /proc does not show yet is not read
                    last_read[each] = proc.processes[current_pid]["user"] / CLOCK_TICKS
        else:
            health.exited(pid, slot, CpuTimes(used[pid] / CLOCK_TICKS, 0.0))
            expected[slot] += used[pid] / CLOCK_TICKS
            last_read[slot] = 0.0
            pids[slot] = pid + 1
            used[pid + 1] = 0
            proc.processes.pop(pid, None)
        for each in (0, 1):
            current = cpu(health, each) or 0.0
            assert current >= seen[each] - 1e-9
            seen[each] = current
            assert pytest.approx(expected[each] + last_read[each]) == current


def test_exits_by_the_runtime_name_the_slot_of_gunicorns_worker(tmp_path):
    """The runtime passes the reaped worker's slot: a worker never read still lands in its slot."""
    from otel_gunicorn._arbiter.runtime import ArbiterRuntime
    from otel_gunicorn._config import Config
    from otel_gunicorn._handoff import SLOT_ATTR

    server = types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1)
    runtime = ArbiterRuntime(Config(metrics_exporters=frozenset(), channel_dir=str(tmp_path)), server)
    try:
        worker = types.SimpleNamespace(pid=4242, aborted=False, **{SLOT_ATTR: 3})
        runtime.health.exited = lambda pid, slot, reaped: setattr(runtime, "seen", (pid, slot, reaped))  # type: ignore[method-assign]
        runtime.worker_exited(worker)
        assert (4242, 3, None) == runtime.seen
    finally:
        runtime.channel.stop()
