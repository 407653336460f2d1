"""How busy a worker's event loop is: the share of wall time it spends running code rather than waiting for I/O.

Runs in a worker whose class serves requests on an event loop — gunicorn's ``asgi`` worker, ``tornado`` and
uvicorn-worker (asyncio's selector loop), ``gevent`` and ``gevent_pywsgi`` (gevent's libev hub loop) — and feeds
``gunicorn.worker.loop.utilization``. For such a worker concurrency is not the limit, the one thread running the
loop is: once the loop never waits, every new request waits for the code ahead of it.

What is timed is the loop's wait for I/O, never a callback or a request:

- asyncio: ``BaseSelectorEventLoop._run_once`` calls ``self._selector.select(timeout)`` once per iteration, and
  only there does the loop wait. That method is wrapped on the loop's own selector instance (not the class): two
  clock reads and one Python call per loop iteration, however many callbacks the iteration runs. ``_selector`` is
  private; a loop without it (uvloop) is not measured and the gauge is absent.
- gevent (libev): a ``prepare`` watcher at the lowest priority — invoked after gevent's own prepare watcher, which
  runs the callbacks queued with ``run_callback`` — notes the time the loop is about to poll; a ``check`` watcher at
  the highest priority notes when the poll returned, before any I/O watcher runs. libuv's loop (``GEVENT_LOOP``)
  orders its watchers otherwise and is not measured.

Hazards: the clock is written on the loop's thread and read from the metric reader's thread (a greenlet of the
same thread under gevent). Its two values — idle seconds so far, start of the poll in progress — live in one
tuple replaced whole, so a reader never pairs a poll's start with another poll's total. A poll in progress when
the reader looks counts as idle up to that moment: a loop blocked in ``select()`` for the whole interval is idle,
not busy. Installing on an asyncio loop runs on that loop's thread (``call_soon_threadsafe``), never from the
reader; gevent's watchers are made on the worker's main thread, in ``post_worker_init``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from otel_gunicorn._worker.interval import Rate
from otel_gunicorn._worker.state import WorkerStateReader

__all__ = ["IdleClock", "LoopUtilization", "time_asyncio_loop", "time_gevent_loop"]

_log = logging.getLogger("otel_gunicorn")

#: gevent's libev loops (Cython and CFFI builds) expose MINPRI/MAXPRI in their module
_GEVENT_LIBEV = ("gevent.libev.corecext", "gevent.libev.corecffi")


class IdleClock:
    """Seconds one event loop has waited for I/O since :attr:`since` (both ``time.perf_counter()`` seconds)."""

    __slots__ = ("_undo", "since", "state")

    def __init__(self, since: float) -> None:
        self.since = since
        #: (idle seconds of finished polls, start of the poll in progress or None); replaced whole, never mutated
        self.state: tuple[float, float | None] = (0.0, None)
        self._undo: Callable[[], None] | None = None  # holds the gevent watchers: alive as long as the clock

    def close(self) -> None:
        """Stop timing the loop (on its thread). A worker times its loop for its whole life; tests do not."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()

    def read(self) -> tuple[float, float]:
        """``(now, idle seconds up to now)``, from any thread: the state is read before the clock, so ``now`` is
        never earlier than the start of the poll it extends."""
        idle, started = self.state
        now = time.perf_counter()
        return now, idle + (now - started if started is not None else 0.0)


def time_asyncio_loop(loop: Any) -> IdleClock | None:
    """Wrap ``loop``'s selector's ``select`` to time the loop's waits; call on the loop's thread. ``None`` when the
    loop has no Python selector (uvloop) or is timed already."""
    selector = getattr(loop, "_selector", None)
    select = getattr(selector, "select", None)
    if select is None or getattr(select, "_otel_gunicorn_clock", None) is not None:
        return None
    clock = IdleClock(time.perf_counter())

    def timed_select(timeout: float | None = None, _now: Any = time.perf_counter) -> Any:
        idle = clock.state[0]
        start = _now()
        clock.state = (idle, start)
        try:
            return select(timeout)
        finally:
            clock.state = (idle + _now() - start, None)

    timed_select._otel_gunicorn_clock = clock  # type: ignore[attr-defined]
    selector.select = timed_select  # type: ignore[union-attr]
    clock._undo = lambda: delattr(selector, "select")  # the class's own method shows through again
    return clock


def time_gevent_loop(loop: Any) -> IdleClock | None:
    """Time a gevent libev hub loop's polls with a prepare and a check watcher; call on the hub's thread. ``None``
    for another loop implementation (libuv)."""
    module = sys.modules.get(type(loop).__module__)
    if type(loop).__module__ not in _GEVENT_LIBEV or not hasattr(module, "MINPRI"):
        return None
    clock = IdleClock(time.perf_counter())

    def polling(_now: Any = time.perf_counter) -> None:
        clock.state = (clock.state[0], _now())

    def polled(_now: Any = time.perf_counter) -> None:
        idle, started = clock.state
        if started is not None:
            clock.state = (idle + _now() - started, None)

    # ref=False: the watchers must not keep the hub's loop running once the worker has nothing else to do
    prepare = loop.prepare(ref=False, priority=module.MINPRI)  # type: ignore[union-attr]
    check = loop.check(ref=False, priority=module.MAXPRI)  # type: ignore[union-attr]
    prepare.start(polling)
    check.start(polled)

    def stop() -> None:
        prepare.stop()
        check.stop()

    clock._undo = stop
    return clock


class LoopUtilization:
    """The busy share of this worker's event loop over each report interval, for the gauge callback.

    Created in ``post_worker_init`` on the worker's main thread, where it times the loop at once if it exists (the
    gevent hub, the asgi worker's loop). uvicorn-worker and tornado create theirs in ``run()``: :meth:`ratio`, on
    the metric reader, looks again until it finds it. Each loop is tried once.
    """

    def __init__(self, state: WorkerStateReader) -> None:
        self._state = state
        self._tried: Any = None
        self._clock: IdleClock | None = None
        self._busy: Rate | None = None
        self._attach(on_main_thread=True)

    def ratio(self) -> float | None:
        """Busy share since the previous call (since timing began, the first time); ``None`` while not timed."""
        clock = self._clock
        if clock is None:
            self._attach(on_main_thread=False)
            return None
        if self._busy is None:
            self._busy = Rate(clock.since, 0.0)
        now, idle = clock.read()
        share = self._busy.per_second(now, now - clock.since - idle)
        return None if share is None else min(share, 1.0)  # float rounding only: busy time never exceeds wall time

    def _attach(self, on_main_thread: bool) -> None:
        try:
            loop = self._state.event_loop()
            if loop is None or loop is self._tried:
                return
            if isinstance(loop, asyncio.AbstractEventLoop):
                self._tried = loop
                loop.call_soon_threadsafe(self._time_asyncio, loop)
            elif on_main_thread:  # gevent's watchers belong to the hub's thread
                self._tried = loop
                self._clock = time_gevent_loop(loop)
        except Exception:  # noqa: BLE001 - an unmeasurable loop means an absent gauge, never a failing worker
            _log.debug("otel_gunicorn: cannot time this worker's event loop", exc_info=True)

    def _time_asyncio(self, loop: Any) -> None:
        # On the loop's thread, between two iterations: nothing is inside select() while it is replaced.
        try:
            self._clock = time_asyncio_loop(loop)
        except Exception:  # noqa: BLE001 - runs as a loop callback: it must not raise into the application's loop
            _log.debug("otel_gunicorn: cannot time this worker's asyncio loop", exc_info=True)
