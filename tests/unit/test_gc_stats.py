"""Unit tests for the worker's garbage-collector metrics (otel_gunicorn._worker.gc_stats), on this process's own
collector: each test installs the callback and removes it again."""

from __future__ import annotations

import gc
import threading

import pytest

from otel_gunicorn import _instruments as inst
from otel_gunicorn._worker.gc_stats import GENERATIONS, GcStats

GEN = inst.GC_GENERATION_ATTRIBUTE
SLOT = inst.SLOT_ATTRIBUTE


class Ticking:
    """A clock that moves by ``step`` seconds at each read: a collection lasts exactly one step."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def installed():
    made: list[GcStats] = []

    def install(slot: int | None = 0, clock=None) -> GcStats:
        stats = GcStats(slot, clock=clock) if clock is not None else GcStats(slot)
        assert stats.install()
        made.append(stats)
        return stats

    yield install
    for stats in made:
        stats.uninstall()


def cycles(n: int) -> None:
    """Make ``n`` objects that only the collector can free (each refers to itself)."""
    for _ in range(n):
        holder: dict = {}
        holder["self"] = holder


def test_a_full_collection_is_counted_and_timed(installed):
    """gc.collect() is one generation-2 collection, and its pause lands in the histogram with the measured time."""
    stats = installed(clock=Ticking(0.003))
    gc.collect()
    snapshot = stats.snapshot()
    assert 1 == snapshot[inst.GC_COLLECTIONS.meta][((GEN, 2), (SLOT, 0))]
    pause = snapshot[inst.GC_PAUSE.meta][((GEN, 2),)]
    assert (1, pytest.approx(0.003)) == (pause.count, pause.sum)
    assert 1 == pause.counts[inst.GC_PAUSE_BUCKETS.index(0.005)]


def test_objects_freed_by_the_collector_are_counted(installed):
    """Ten thousand self-referencing dicts, collected: at least as many objects collected in generation 2."""
    gc.collect()  # what was already garbage goes first
    stats = installed()
    cycles(10_000)
    gc.collect()
    collected = stats.snapshot()[inst.GC_COLLECTED.meta]
    assert sum(collected.values()) >= 10_000


def test_uncollectable_objects_are_counted_as_reported():
    """The callback adds what the collector reports at the end of a collection, per generation."""
    stats = GcStats(3)
    stats.callback("start", {"generation": 1, "collected": 0, "uncollectable": 0})
    stats.callback("stop", {"generation": 1, "collected": 7, "uncollectable": 2})
    snapshot = stats.snapshot()
    key = ((GEN, 1), (SLOT, 3))
    assert (1, 7, 2) == tuple(
        snapshot[i.meta][key] for i in (inst.GC_COLLECTIONS, inst.GC_COLLECTED, inst.GC_UNCOLLECTABLE)
    )


def test_counters_carry_the_slot_and_the_histogram_only_the_generation(installed):
    """Every generation has its counters from the start (0: none yet); a pause histogram once it was collected."""
    stats = GcStats(5)
    stats.callback("start", {"generation": 0})
    stats.callback("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    snapshot = stats.snapshot()
    assert [((GEN, g), (SLOT, 5)) for g in range(GENERATIONS)] == list(snapshot[inst.GC_COLLECTIONS.meta])
    assert [((GEN, 0),)] == list(snapshot[inst.GC_PAUSE.meta])


def test_without_a_slot_the_counters_have_only_the_generation():
    """A worker without a slot (not forked through our pre_fork) still reports, by generation alone."""
    assert [((GEN, g),) for g in range(GENERATIONS)] == list(GcStats(None).snapshot()[inst.GC_COLLECTIONS.meta])


def test_a_collection_on_another_thread_counts_too(installed):
    """The collector runs on whichever thread allocates; its collections are the worker's all the same."""
    stats = installed()
    thread = threading.Thread(target=gc.collect)
    thread.start()
    thread.join()
    assert 1 <= stats.snapshot()[inst.GC_COLLECTIONS.meta][((GEN, 2), (SLOT, 0))]


def test_nothing_is_measured_without_gc_callbacks(monkeypatch):
    """An interpreter without gc.callbacks (PyPy): install says so, and the worker reports no GC metrics."""
    monkeypatch.delattr(gc, "callbacks")
    assert not GcStats(0).install()


def test_uninstall_removes_only_its_own_callback(installed):
    """Uninstalling leaves the application's own callbacks in place."""

    def theirs(phase, info):
        return None

    gc.callbacks.append(theirs)
    try:
        stats = installed()
        stats.uninstall()
        assert theirs in gc.callbacks and stats.callback not in gc.callbacks
    finally:
        gc.callbacks.remove(theirs)
