"""Where a request is: the Python stack of the thread, greenlet or task serving it, bounded and without values.

Runs in a worker, on the reporting thread (or greenlet) for slow requests and on the main thread, inside gunicorn's
SIGABRT handler, for a ``--timeout`` abort. The serving context is what the request core recorded when the request
began (:meth:`WorkerStateReader.serving`): nothing (the worker's main thread: sync, tornado), a thread ident
(gthread), a greenlet (gevent) or an asyncio task (asgi, uvicorn-worker). Its stack is read the way debuggers do:

- a thread's innermost frame from ``sys._current_frames()``; the thread that is reading (the abort handler's own)
  from the frame the signal interrupted;
- a greenlet's from ``greenlet.gr_frame`` (it is suspended while another greenlet reads it); the running one's —
  the greenlet blocking the hub when the abort arrives — from the frame the signal interrupted;
- a task's by following its coroutine's ``cr_await`` chain down to what it waits for (``Task.get_stack()`` shows
  only the outermost coroutine of a suspended task). If the task is the one its loop is running right now, the loop
  itself is blocked by it: then the loop thread's real stack, said as ``blocked_loop``.

What leaves here is file, line and function name only, as ``faulthandler`` and uWSGI's tracebacker print them: never
a local variable, an argument or a source line, so no request data reaches the logs. Bounded: the innermost
:data:`MAX_FRAMES` frames, each rendered in at most :data:`MAX_ENTRY` characters, control characters replaced, so a
JSON line stays one line and small.

Hazards: another thread's frames change under the reader; every read here is of one attribute at a time (atomic
under the GIL), and a frame that is gone simply ends the walk.
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, NamedTuple

#: innermost frames kept per stack (the outer ones are gunicorn's and the server's loops)
MAX_FRAMES = 40
#: characters per rendered frame, ``file:line function``
MAX_ENTRY = 200
#: a stack walk stops here whatever the depth (deeper than CPython's default recursion limit)
_MAX_WALK = 2000
#: where gunicorn's arbiter forks its workers (``Arbiter.spawn_worker``): a worker's main stack starts below it
_ARBITER_FILE = os.path.join("gunicorn", "arbiter.py")

#: where a stack was read: the serving thread, greenlet or task, or the event loop's thread while the task serving
#: the request blocks it
THREAD, GREENLET, TASK, BLOCKED_LOOP = "thread", "greenlet", "task", "blocked_loop"

#: control characters, each replaced by ``?`` in what is shown (``str.translate``)
CONTROL = {code: "?" for code in (*range(0x20), 0x7F)}


class Stack(NamedTuple):
    """A bounded stack: ``frames`` rendered ``file:line function``, innermost last; ``omitted`` outer frames left out;
    ``of`` where it was read (:data:`THREAD`, :data:`GREENLET`, :data:`TASK`, :data:`BLOCKED_LOOP`); ``own`` the index
    in ``frames`` of the innermost frame of the application's own code (None: all of it is library code)."""

    frames: tuple[str, ...]
    omitted: int
    of: str
    own: int | None = None

    @property
    def innermost(self) -> str:
        """The innermost frame of the application's own code — where it waits is usually a library's (``sleep``,
        a socket read), what it was doing is the application's — else the innermost frame, else ``"?"``."""
        if self.own is not None:
            return self.frames[self.own]
        return self.frames[-1] if self.frames else "?"

    def traceback(self) -> str:
        """The stack as Python prints a traceback's frames (``exception.stacktrace`` of a span event)."""
        lines = ["Traceback (most recent call last):"]
        if self.omitted:
            lines.append(f"  [{self.omitted} outer frames omitted]")
        lines += [f"  {frame}" for frame in self.frames]
        return "\n".join(lines)


def entry(filename: str, line: int | None, function: str, limit: int = MAX_ENTRY) -> str:
    """One frame as ``file:line function`` in at most ``limit`` characters (the start of a long path gives way
    first, as ``…``), with no control character: a log line stays one line."""
    text = f"{filename}:{line if line is not None else '?'} {function}".translate(CONTROL)
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]


def render(frames: list[FrameType], of: str, limit: int = MAX_FRAMES) -> Stack:
    """``frames`` (outermost first) as a :class:`Stack` of the innermost ``limit``."""
    kept = frames[-limit:] if limit else []
    rendered = tuple(entry(f.f_code.co_filename, f.f_lineno, _function(f)) for f in kept)
    own = [i for i, f in enumerate(kept) if is_own_code(f.f_code.co_filename)]
    return Stack(rendered, len(frames) - len(kept), of, own[-1] if own else None)


def _library_directories() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    found.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # otel_gunicorn's own wrappers
    return tuple(os.path.join(path, "") for path in sorted(found))


_LIBRARIES = _library_directories()


def is_own_code(filename: str) -> bool:
    """Whether ``filename`` is the application's: neither the standard library, nor an installed package, nor
    otel_gunicorn, nor frozen or generated code (``<frozen runpy>``, ``<string>``)."""
    return not filename.startswith(("<", *_LIBRARIES))


def _function(frame: FrameType) -> str:
    code = frame.f_code
    return getattr(code, "co_qualname", code.co_name)  # the class too (Python 3.11+): Handler.stuck_in_here


def outward(frame: FrameType | None) -> list[FrameType]:
    """``frame`` and its callers, outermost first (a thread's or a greenlet's stack), up to the fork: the main
    thread's frames from gunicorn's ``Arbiter.spawn_worker`` outward are the arbiter's, copied by the fork (its main
    loop, its start-up), and say nothing about the request."""
    frames: list[FrameType] = []
    while frame is not None and len(frames) < _MAX_WALK and not _is_fork_point(frame):
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    return frames


def _is_fork_point(frame: FrameType) -> bool:
    code = frame.f_code
    return code.co_name == "spawn_worker" and code.co_filename.endswith(_ARBITER_FILE)


def awaiting(coroutine: Any) -> list[FrameType]:
    """A suspended coroutine's frames down its ``await`` chain, outermost first: the coroutine, the coroutine it
    awaits, and so on to the innermost one (which waits on a future or sleeps)."""
    frames: list[FrameType] = []
    for link in _await_chain(coroutine):
        frame = getattr(link, "cr_frame", None) or getattr(link, "gi_frame", None) or getattr(link, "ag_frame", None)
        if frame is None:  # finished, or not a coroutine (a future, an awaitable object): the chain ends
            break
        frames.append(frame)
    return frames


def _await_chain(link: Any) -> Iterator[Any]:
    for _ in range(_MAX_WALK):
        if link is None:
            return
        yield link
        link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None) or getattr(link, "ag_await", None)


def handler_interrupted(frame: FrameType | None) -> FrameType | None:
    """From inside a signal handler: the frame the signal interrupted — the caller of gunicorn's ``handle_abort``
    (``frame.f_back`` of the handler is the frame that was running). None when no such handler is on the stack."""
    while frame is not None:
        if frame.f_code.co_name.startswith("handle_abort"):
            return frame.f_back
        frame = frame.f_back
    return None


class StackReader:
    """Reads the stack of the context serving a request.

    Args:
        main_thread: the ident of the worker's main thread, which serves requests recorded without a context (sync,
            tornado) and runs the event loop (asgi, uvicorn-worker).
    """

    def __init__(self, main_thread: int) -> None:
        self._main = main_thread

    def read(self, serving: object, interrupted: FrameType | None = None) -> Stack | None:
        """The stack of ``serving`` (a request's recorded context), or None when it cannot be read (the thread or
        greenlet is gone). ``interrupted``: the frame a signal interrupted, when called from its handler on this
        thread — the stack of the context that is running here."""
        if serving is None or serving.__class__ is int:
            return self._thread(self._main if serving is None else serving, interrupted)
        if hasattr(serving, "gr_frame"):
            return self._greenlet(serving, interrupted)
        if isinstance(serving, asyncio.Task):
            return self._task(serving, interrupted)
        return None

    def _thread(self, ident: int, interrupted: FrameType | None) -> Stack | None:
        if ident == threading.get_ident():
            frame = interrupted  # this thread's own request: what it was running when the signal came
        else:
            frame = sys._current_frames().get(ident)
        return render(outward(frame), THREAD) if frame is not None else None

    @staticmethod
    def _greenlet(greenlet: Any, interrupted: FrameType | None) -> Stack | None:
        running = sys.modules.get("greenlet")
        if running is not None and greenlet is running.getcurrent():
            frame = interrupted
        else:
            frame = greenlet.gr_frame  # None: finished, or not started yet
        return render(outward(frame), GREENLET) if frame is not None else None

    def _task(self, task: asyncio.Task[Any], interrupted: FrameType | None) -> Stack | None:
        if task.done():
            return None
        if asyncio.current_task(task.get_loop()) is task:
            # The loop is running this task's code right now: from another thread, that means the task holds the
            # loop — everything else on this worker waits for it. Its real stack is the loop thread's.
            stack = self._thread(self._main, interrupted)
            return stack._replace(of=BLOCKED_LOOP) if stack is not None else None
        return render(awaiting(task.get_coro()), TASK)
