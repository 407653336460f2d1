"""The utilisation signal's pure parts: the arbiter's computation (otel_gunicorn._arbiter.server_metrics), the
worker's averages over the report interval (_worker.interval, request_stats.busy_seconds) and its event-loop timing
(_worker.loop_time) on real asyncio and gevent loops."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import gevent
import pytest
from gunicorn.workers.base import Worker
from gunicorn.workers.gasgi import ASGIWorker
from gunicorn.workers.ggevent import GeventPyWSGIWorker, GeventWorker
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.gtornado import TornadoWorker
from gunicorn.workers.sync import SyncWorker
from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn_worker import UvicornH11Worker, UvicornWorker

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.server_metrics import (
    LOOPS,
    THREADS,
    WORKERS,
    Load,
    limited_by,
    load_of,
    utilization,
    utilization_metrics,
)
from otel_gunicorn._snapshot import Snapshot
from otel_gunicorn._worker.interval import Rate
from otel_gunicorn._worker.loop_time import IdleClock, LoopUtilization, time_asyncio_loop, time_gevent_loop
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.state import WorkerStateReader
from otel_gunicorn._worker.state.asgi import ASGIReader
from otel_gunicorn._worker.state.gevent import GeventPyWSGIReader
from otel_gunicorn._worker.state.sync import SyncReader
from otel_gunicorn._worker.state.tornado import TornadoReader
from otel_gunicorn._worker.state.uvicorn import UvicornReader

fast = settings(max_examples=200, deadline=None)
LISTENER = ((inst.LISTENER_ATTRIBUTE, "http://127.0.0.1:8000"), ("network.transport", "tcp"))
#: busy or waiting work: none, or a positive amount (subnormal floats would underflow the division to 0)
counts = st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e6))


def slot(n: int, *more: tuple[str, str]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(((inst.SLOT_ATTRIBUTE, n), *more)))


def per_slot(instrument: inst.Instrument, values: list[float]) -> Snapshot:
    return {instrument.meta: {slot(i): v for i, v in enumerate(values)}}


def queued(value: float) -> Snapshot:
    return {inst.LISTENER_QUEUED.meta: {LISTENER: value}}


# ---------------------------------------------------------------- what limits a worker class


@pytest.mark.parametrize(
    ("worker_class", "expected"),
    [
        (SyncWorker, WORKERS),
        (ThreadWorker, THREADS),
        (GeventWorker, LOOPS),
        (GeventPyWSGIWorker, LOOPS),
        (ASGIWorker, LOOPS),
        (TornadoWorker, LOOPS),
        (UvicornWorker, LOOPS),
        (UvicornH11Worker, LOOPS),
    ],
)
def test_each_worker_class_is_limited_by_what_limits_it(worker_class: type, expected: str) -> None:
    """Workers for sync, threads for gthread, the event loop for gevent, asgi, tornado and uvicorn-worker."""
    assert expected == limited_by(worker_class)


def test_a_subclass_is_limited_like_its_base() -> None:
    """A user's subclass of a known worker class is matched along its MRO."""

    class Mine(ThreadWorker):
        pass

    assert THREADS == limited_by(Mine)


@pytest.mark.parametrize("worker_class", [Worker, None, "sync", object])
def test_an_unknown_worker_class_has_no_limit(worker_class: Any) -> None:
    """A class that is none of the known ones, or no class at all, has no known limit."""
    assert limited_by(worker_class) is None


# ---------------------------------------------------------------- the formula


def test_utilization_is_running_plus_waiting_over_capacity() -> None:
    """3 of 4 threads busy and 2 requests queued: 5/4."""
    assert 1.25 == utilization(Load(4, 3.0, 2.0))


def test_no_capacity_means_no_value() -> None:
    """With nothing to divide by there is no utilisation (never a made-up 0)."""
    assert utilization(Load(0, 0.0, 3.0)) is None


@fast
@given(st.integers(min_value=1, max_value=10_000), counts, counts, counts)
def test_utilization_grows_with_running_and_waiting_work(capacity: int, running: float, waiting: float, more: float):
    """More work running or waiting never lowers the value."""
    value = utilization(Load(capacity, running, waiting))
    assert value is not None
    assert value <= utilization(Load(capacity, running + more, waiting))  # type: ignore[operator]
    assert value <= utilization(Load(capacity, running, waiting + more))  # type: ignore[operator]


@fast
@given(st.integers(min_value=1, max_value=10_000), counts, counts)
def test_utilization_is_zero_only_when_idle(capacity: int, running: float, waiting: float) -> None:
    """0 exactly when nothing runs and nothing waits; never negative."""
    value = utilization(Load(capacity, running, waiting))
    assert value is not None and value >= 0
    assert (value == 0) == (running == 0 and waiting == 0)


# ---------------------------------------------------------------- the inputs, from the merged snapshot


def test_sync_load_is_busy_workers_plus_the_listener_queue() -> None:
    """Two sync workers busy 0.5 and 1.0 of the interval, 3 connections queued: capacity 2, load 4.5."""
    snapshot = {**per_slot(inst.CONCURRENCY, [0.5, 1.0]), **queued(3)}
    assert Load(2, 1.5, 3.0) == load_of(WORKERS, snapshot)


def test_gthread_load_counts_threads_and_both_queues() -> None:
    """Two workers of 4 threads: requests in flight, pool queues and the listener queue all count."""
    snapshot = {
        **per_slot(inst.THREAD_LIMIT, [4, 4]),
        **per_slot(inst.CONCURRENCY, [4.0, 2.5]),
        **per_slot(inst.THREAD_QUEUE, [3, 0]),
        **queued(1),
    }
    assert Load(8, 6.5, 4.0) == load_of(THREADS, snapshot)


def test_gthread_without_a_readable_pool_queue_counts_the_rest() -> None:
    """A worker whose pool queue cannot be read (gauge absent) adds no waiting work; the signal stays."""
    snapshot = {**per_slot(inst.THREAD_LIMIT, [2]), **per_slot(inst.CONCURRENCY, [2.0])}
    assert Load(2, 2.0, 0.0) == load_of(THREADS, snapshot)


def test_loop_load_sums_busy_shares_and_ignores_the_listener_queue() -> None:
    """Two loops busy 0.25 and 0.75: capacity 2, load 1; a connection caught before accept() adds nothing."""
    snapshot = {**per_slot(inst.LOOP_UTILIZATION, [0.25, 0.75]), **queued(1)}
    assert Load(2, 1.0, 0.0) == load_of(LOOPS, snapshot)


@pytest.mark.parametrize(
    ("limit", "snapshot"),
    [
        (WORKERS, queued(5)),  # no worker reported its concurrency yet
        (THREADS, per_slot(inst.CONCURRENCY, [1.0])),  # no thread limit
        (THREADS, per_slot(inst.THREAD_LIMIT, [4])),  # no concurrency
        (LOOPS, {**per_slot(inst.CONCURRENCY, [1.0]), **queued(2)}),  # loops not timed (uvloop, libuv)
        (None, {**per_slot(inst.CONCURRENCY, [1.0]), **per_slot(inst.LOOP_UTILIZATION, [1.0])}),  # unknown class
    ],
)
def test_a_missing_input_makes_the_signal_absent(limit: str | None, snapshot: Snapshot) -> None:
    """What a class's definition needs must have been reported: otherwise nothing, not 0."""
    assert load_of(limit, snapshot) is None


@fast
@given(
    st.sampled_from([WORKERS, THREADS, LOOPS]),
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=100),
)
def test_absent_exactly_when_the_class_input_is_absent(limit: str, shares: list[float], waiting: int) -> None:
    """Present with the class's own gauges; absent once they are removed, whatever else is there."""
    own = {
        WORKERS: per_slot(inst.CONCURRENCY, shares),
        THREADS: {**per_slot(inst.THREAD_LIMIT, [2] * len(shares)), **per_slot(inst.CONCURRENCY, shares)},
        LOOPS: per_slot(inst.LOOP_UTILIZATION, shares),
    }[limit]
    others = {**queued(waiting), **per_slot(inst.THREAD_QUEUE, [waiting])}
    assert load_of(limit, {**own, **others}) is not None
    needed = inst.LOOP_UTILIZATION if limit == LOOPS else inst.CONCURRENCY
    assert load_of(limit, {m: p for m, p in {**own, **others}.items() if m != needed.meta}) is None


def test_the_arbiter_serves_utilization_and_capacity_per_server() -> None:
    """From gunicorn's worker_class and the merged snapshot: one point each, without attributes."""
    server = SimpleNamespace(worker_class=SyncWorker)
    snapshot = {**per_slot(inst.CONCURRENCY, [1.0, 0.0, 0.5, 0.5]), **queued(2)}
    expected = {inst.SERVER_UTILIZATION.meta: {(): 1.0}, inst.SERVER_CAPACITY.meta: {(): 4}}
    assert expected == utilization_metrics(server, snapshot)


def test_the_arbiter_serves_nothing_it_cannot_compute() -> None:
    """An unknown class, or a known one without its inputs: neither gauge."""
    snapshot = per_slot(inst.CONCURRENCY, [1.0])
    assert {} == utilization_metrics(SimpleNamespace(worker_class=Worker), snapshot)
    assert {} == utilization_metrics(SimpleNamespace(worker_class=GeventWorker), snapshot)
    assert {} == utilization_metrics(SimpleNamespace(), snapshot)


# ---------------------------------------------------------------- averages over the report interval


def test_rate_is_growth_per_second_since_the_previous_reading() -> None:
    """1.5 busy seconds over 2 s: 0.75; then the next reading starts from there."""
    rate = Rate(10.0, 0.0)
    assert 0.75 == rate.per_second(12.0, 1.5)
    assert 0.5 == rate.per_second(14.0, 2.5)


def test_rate_without_elapsed_time_is_absent_and_keeps_its_start() -> None:
    """A second reading at the same instant yields nothing and does not move the interval's start."""
    rate = Rate(10.0, 0.0)
    assert rate.per_second(10.0, 5.0) is None
    assert 1.0 == rate.per_second(11.0, 1.0)


@fast
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=20))
def test_busy_seconds_integrate_requests_in_flight(requests: list[tuple[float, float]]) -> None:
    """busy_seconds(now) is the sum over requests started by ``now`` of the part of them before ``now``."""
    stats = RequestStats()
    key = (("http.request.method", "GET"),)
    now = 150.0
    for start, _duration in requests:
        stats.started(key, start)
    for start, duration in requests:
        if start + duration <= now:
            stats.finished(key, key, duration, start)
    expected = sum(min(start + duration, now) - start for start, duration in requests)
    assert expected == pytest.approx(stats.busy_seconds(now), abs=1e-6)


def test_requests_without_times_are_not_integrated() -> None:
    """started/finished without times (older callers) leave busy seconds alone."""
    stats = RequestStats()
    key = (("http.request.method", "GET"),)
    stats.started(key)
    stats.finished(key, key, 1.0)
    assert 0.0 == stats.busy_seconds(100.0)


# ---------------------------------------------------------------- timing event loops


def test_an_unfinished_poll_counts_as_idle_up_to_now() -> None:
    """A loop blocked in its poll while the reader looks is idle, not busy."""
    clock = IdleClock(since=0.0)
    clock.state = (2.0, time.perf_counter() - 1.0)
    _now, idle = clock.read()
    assert 3.0 == pytest.approx(idle, abs=0.05)


def spin(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def test_an_asyncio_loop_is_busy_while_callbacks_run() -> None:
    """A loop that spins 30 ms then waits 30 ms, for 0.6 s: busy about half of the time."""
    loop = asyncio.new_event_loop()
    try:
        clock = time_asyncio_loop(loop)
        assert clock is not None

        async def work() -> None:
            for _ in range(10):
                spin(0.03)
                await asyncio.sleep(0.03)

        start, idle_before = clock.read()
        loop.run_until_complete(work())
        end, idle_after = clock.read()
        clock.close()
    finally:
        loop.close()
    busy = 1 - (idle_after - idle_before) / (end - start)
    assert 0.35 < busy < 0.65


def test_an_asyncio_loop_is_timed_once_and_can_be_untimed() -> None:
    """A second attempt on the same loop does nothing; close() restores the selector's own select."""
    loop = asyncio.new_event_loop()
    try:
        clock = time_asyncio_loop(loop)
        assert clock is not None
        assert time_asyncio_loop(loop) is None
        clock.close()
        assert "select" not in vars(loop._selector)  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_a_loop_without_a_python_selector_is_not_timed() -> None:
    """uvloop and other loops without ``_selector``: no clock, so the gauge is absent."""
    assert time_asyncio_loop(SimpleNamespace()) is None
    assert time_gevent_loop(SimpleNamespace()) is None


def test_the_gevent_hub_loop_is_busy_while_greenlets_run() -> None:
    """A greenlet that spins 30 ms then sleeps 30 ms, for 0.6 s: the hub is busy about half of the time."""
    clock = time_gevent_loop(gevent.get_hub().loop)
    assert clock is not None

    def work() -> None:
        for _ in range(10):
            spin(0.03)
            gevent.sleep(0.03)

    try:
        start, idle_before = clock.read()
        gevent.spawn(work).join()
        end, idle_after = clock.read()
    finally:
        clock.close()
    busy = 1 - (idle_after - idle_before) / (end - start)
    assert 0.35 < busy < 0.65


class LoopReader(WorkerStateReader):
    """A state reader whose loop appears when the test says so."""

    def __init__(self) -> None:
        super().__init__(None)
        self.loop: Any = None

    def event_loop(self) -> Any:
        return self.loop


def test_loop_utilization_finds_a_late_loop_and_reports_its_busy_share() -> None:
    """No loop yet: nothing. Once it exists the next read schedules the timing on it; later reads have a value."""
    reader = LoopReader()
    monitor = LoopUtilization(reader)
    assert monitor.ratio() is None
    reader.loop = loop = asyncio.new_event_loop()
    try:
        assert monitor.ratio() is None  # found: timing is installed on the loop's own thread, at its next turn
        loop.run_until_complete(asyncio.sleep(0.05))
        assert monitor.ratio() is not None
        loop.run_until_complete(asyncio.sleep(0.05))
        assert 0 <= monitor.ratio() <= 0.5  # type: ignore[operator]
    finally:
        loop.close()


def test_a_thread_based_worker_has_no_loop_utilization() -> None:
    """sync and gthread readers have no event loop: the gauge stays absent."""
    assert LoopUtilization(WorkerStateReader(None)).ratio() is None


# ---------------------------------------------------------------- which loop each worker class serves on


def test_the_asgi_worker_serves_on_its_loop_attribute() -> None:
    """gunicorn's asgi worker: ``worker.loop``, made in init_process before post_worker_init."""
    loop = object()
    assert loop is ASGIReader(SimpleNamespace(loop=loop)).event_loop()


def test_tornado_serves_on_the_asyncio_loop_under_its_ioloop() -> None:
    """tornado >= 5 runs its IOLoop on asyncio: ``worker.ioloop.asyncio_loop``, once run() made it."""
    loop = object()
    assert loop is TornadoReader(SimpleNamespace(ioloop=SimpleNamespace(asyncio_loop=loop))).event_loop()
    assert TornadoReader(SimpleNamespace()).event_loop() is None


def test_uvicorn_serves_on_the_loop_of_its_listening_servers() -> None:
    """uvicorn-worker: the loop ``asyncio.Server.get_loop()`` names, once the uvicorn server listens."""
    loop = object()
    listening = SimpleNamespace(servers=[SimpleNamespace(get_loop=lambda: loop)])
    assert loop is UvicornReader(SimpleNamespace(server=listening)).event_loop()
    assert UvicornReader(SimpleNamespace(server=SimpleNamespace(servers=[]))).event_loop() is None


def test_gevent_serves_on_the_hub_loop() -> None:
    """gevent and gevent_pywsgi: the loop of this thread's hub."""
    assert gevent.get_hub().loop is GeventPyWSGIReader(SimpleNamespace()).event_loop()


def test_a_loop_that_cannot_be_read_is_absent() -> None:
    """A worker object that raises while its loop is read: no loop, not an error."""

    class Broken:
        @property
        def loop(self) -> Any:
            raise RuntimeError("torn down")

    assert ASGIReader(Broken()).event_loop() is None
    assert SyncReader(SimpleNamespace(loop=object())).event_loop() is None
