"""Stacks of the thread, greenlet or task serving a request: bounded, innermost last, file, line and function only."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_gunicorn._worker import stacks
from otel_gunicorn._worker.stacks import MAX_ENTRY, MAX_FRAMES, StackReader

SECRET = "hunter2-never-in-a-log"


def parked_in_here(ready: threading.Event, release: threading.Event) -> None:
    password = SECRET  # a local variable: its value must never appear in a stack
    ready.set()
    release.wait(10)
    del password


def deep(levels: int, ready: threading.Event, release: threading.Event) -> None:
    if levels:
        deep(levels - 1, ready, release)
    else:
        parked_in_here(ready, release)


@pytest.fixture
def parked() -> Iterator[Callable[[int], int]]:
    """Start a thread parked in ``parked_in_here`` under ``levels`` calls of ``deep``; give its ident."""
    release = threading.Event()
    threads = []

    def start(levels: int) -> int:
        ready = threading.Event()
        thread = threading.Thread(target=deep, args=(levels, ready, release), daemon=True)
        thread.start()
        threads.append(thread)
        assert ready.wait(10)
        assert thread.ident is not None
        return thread.ident

    yield start
    release.set()
    for thread in threads:
        thread.join(10)


# ---------------------------------------------------------------- rendering


@given(st.text(max_size=400), st.one_of(st.none(), st.integers(0, 10**9)), st.text(max_size=400))
def test_a_frame_renders_in_at_most_its_bound_on_one_line(filename: str, line: int | None, function: str) -> None:
    rendered = stacks.entry(filename, line, function)
    assert len(rendered) <= MAX_ENTRY
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in rendered)


def test_a_long_path_gives_way_before_the_function() -> None:
    rendered = stacks.entry("/very" * 100 + "/app.py", 12, "stuck_in_here")
    assert (MAX_ENTRY, True, True) == (
        len(rendered),
        rendered.startswith("…"),
        rendered.endswith("app.py:12 stuck_in_here"),
    )


def test_a_thread_stack_names_the_function_innermost_last_without_values(parked: Callable[[int], int]) -> None:
    stack = StackReader(threading.main_thread().ident or 0).read(parked(2))
    assert stack is not None
    assert ("thread", 0) == (stack.of, stack.omitted)
    assert stack.frames[-1].endswith(" parked_in_here") or "wait" in stack.frames[-1]
    assert [f.rsplit(" ", 1)[1] for f in stack.frames if "test_stacks.py" in f] == [
        "deep",
        "deep",
        "deep",
        "parked_in_here",
    ]
    assert stack.innermost.endswith(" parked_in_here"), "the application's innermost frame, not threading's wait"
    assert SECRET not in repr(stack) and SECRET not in stack.traceback()


def test_a_deep_stack_keeps_its_innermost_frames(parked: Callable[[int], int]) -> None:
    stack = StackReader(0).read(parked(MAX_FRAMES + 50))
    assert stack is not None
    assert MAX_FRAMES == len(stack.frames)
    assert stack.omitted >= 50
    assert f"[{stack.omitted} outer frames omitted]" in stack.traceback()
    assert any(f.endswith(" parked_in_here") for f in stack.frames)


def test_a_thread_that_is_gone_has_no_stack() -> None:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    assert None is StackReader(0).read(thread.ident)


def test_the_main_thread_serves_requests_recorded_without_a_context(parked: Callable[[int], int]) -> None:
    """sync records no context: the stack is the main thread's (here, a parked thread standing in for it)."""
    ident = parked(0)
    stack = StackReader(ident).read(None)
    assert stack is not None and stack.innermost.endswith(" parked_in_here")


# ---------------------------------------------------------------- the abort handler's own thread


def handle_abort() -> FrameType | None:
    """Named as gunicorn's handler: what it interrupted is its caller."""
    return stacks.handler_interrupted(sys._getframe())


def stuck_in_here() -> Any:
    return handle_abort(), StackReader(threading.get_ident()).read(None, handle_abort())


def test_in_the_abort_handler_the_stack_is_what_the_signal_interrupted() -> None:
    interrupted, stack = stuck_in_here()
    assert interrupted is not None and "stuck_in_here" == interrupted.f_code.co_name
    assert stack is not None and stack.frames[-1].endswith(" stuck_in_here")


def test_a_workers_stack_ends_at_the_fork() -> None:
    """Frames outward of gunicorn's Arbiter.spawn_worker are the arbiter's, copied by the fork: left out."""
    namespace: dict[str, Any] = {}
    source = "def spawn_worker(inner):\n    return inner()\n"
    exec(compile(source, "/site-packages/gunicorn/arbiter.py", "exec"), namespace)  # a fake arbiter frame
    frames = namespace["spawn_worker"](lambda: stacks.outward(sys._getframe()))
    assert [] == [f for f in frames if f.f_code.co_name in ("spawn_worker", "test_a_workers_stack_ends_at_the_fork")]
    assert 1 == len(frames)


# ---------------------------------------------------------------- tasks and greenlets


async def waiting_in_here(ready: asyncio.Event) -> None:
    ready.set()
    await asyncio.sleep(30)


async def handler(ready: asyncio.Event) -> None:
    await waiting_in_here(ready)


def blocking_the_loop_in_here(ready: threading.Event, release: threading.Event) -> None:
    ready.set()
    release.wait(10)


async def blocking(ready: threading.Event, release: threading.Event) -> None:
    blocking_the_loop_in_here(ready, release)


def test_a_suspended_tasks_stack_follows_its_awaits() -> None:
    """Task.get_stack() shows only the outermost coroutine of a suspended task; the await chain names the rest."""

    async def main() -> Any:
        ready = asyncio.Event()
        task = asyncio.create_task(handler(ready))
        await ready.wait()
        # read from another thread, as the reporting thread does
        found: list[Any] = []
        reader = threading.Thread(target=lambda: found.append(StackReader(0).read(task)))
        reader.start()
        await asyncio.to_thread(reader.join, 10)
        task.cancel()
        return found[0]

    stack = asyncio.run(main())
    assert stack is not None and "task" == stack.of
    names = [f.rsplit(" ", 1)[1] for f in stack.frames]
    assert ["handler", "waiting_in_here", "sleep"] == names
    assert stack.innermost.endswith(" waiting_in_here")


def test_a_task_blocking_its_loop_is_read_on_the_loops_thread() -> None:
    ready, release = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def loop_thread() -> None:
        async def main() -> None:
            box["task"] = asyncio.current_task()
            await blocking(ready, release)

        asyncio.run(main())

    thread = threading.Thread(target=loop_thread, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        assert thread.ident is not None
        stack = StackReader(thread.ident).read(box["task"])
    finally:
        release.set()
        thread.join(10)
    assert stack is not None and "blocked_loop" == stack.of
    assert stack.innermost.endswith(" blocking_the_loop_in_here")


def test_a_greenlets_stack_is_its_suspended_frame() -> None:
    greenlet = pytest.importorskip("greenlet")

    def suspended_in_here() -> None:
        greenlet.getcurrent().parent.switch()

    served = greenlet.greenlet(suspended_in_here)
    served.switch()  # runs until it switches back, suspended
    stack = StackReader(0).read(served)
    assert stack is not None and "greenlet" == stack.of
    assert stack.frames[-1].endswith(".suspended_in_here")
    served.throw(greenlet.GreenletExit)
    assert None is StackReader(0).read(served), "a finished greenlet has no stack"


def test_the_own_code_is_neither_the_standard_library_nor_an_installed_package() -> None:
    assert stacks.is_own_code(__file__)
    assert not stacks.is_own_code(time.__file__ if hasattr(time, "__file__") else threading.__file__)
    assert not stacks.is_own_code(pytest.__file__)
    assert not stacks.is_own_code(stacks.__file__)
    assert not stacks.is_own_code("<frozen runpy>")
