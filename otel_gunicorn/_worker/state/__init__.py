"""What a worker is doing right now, read from the gunicorn worker object: open connections, their cap, its threads,
the event loop it serves on.

One small module per worker class behind :class:`WorkerStateReader`; :func:`state_reader` picks one by the worker's
class and falls back to the base reader (everything absent) for a class it does not know. The modules:
:mod:`.sync`, :mod:`.gthread`, :mod:`.gevent`, :mod:`.asgi` (gunicorn's own ``asgi`` worker), :mod:`.tornado` and
:mod:`.uvicorn` (``uvicorn_worker.UvicornWorker``).

Runs in a worker, after the fork. The readers are called from **another thread** than the one serving — the SDK's
metric reader thread, or a greenlet under gevent — while the worker mutates the very objects they read. Every reader
therefore:

- reads an ``int`` attribute or takes ``len()`` of a container, both atomic under the GIL, and **never iterates** a
  deque, set or dict the worker mutates (that raises "mutated during iteration", or reads torn state);
- treats gunicorn internals as what they are, not an API: each attribute is read with ``getattr(..., None)``, and a
  value that is missing, of the wrong type, or raises makes the metric **absent** (``None``), never a fake 0;
- is cheap and never blocks: under gevent the caller is a greenlet on the worker's only OS thread.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

__all__ = ["ThreadPool", "WorkerStateReader", "absent_on_error", "count", "size", "state_reader"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class ThreadPool(NamedTuple):
    """A worker's thread pool: ``busy`` of ``limit`` threads run work, ``queued`` work items wait for a thread."""

    busy: int
    """Threads currently running work (a request, or a connection waiting for its first bytes)."""
    limit: int
    """Threads the pool may run (``--threads``)."""
    queued: int | None
    """Accepted work waiting for a free thread; ``None`` when the pool's queue cannot be read."""


class WorkerStateReader:
    """The reader for a worker class otel_gunicorn does not know: nothing is measurable, so everything is absent.

    Subclasses override the methods they can answer; every override is wrapped in :func:`absent_on_error`.
    """

    requests_via_hooks: bool = True
    """Whether gunicorn calls ``pre_request``/``post_request`` for the requests this worker class serves."""

    asgi_via_hooks: bool = False
    """Whether those hooks serve an ASGI application (``post_request`` then gets no scope to read the route from)."""

    def __init__(self, worker: Any) -> None:
        self._worker = worker

    def app_interface(self) -> str | None:
        """Where gunicorn does not call the request hooks: the interface of the loaded application (``"wsgi"`` or
        ``"asgi"``) that otel_gunicorn wraps to see requests instead, or ``None`` to leave the application alone.
        Called once, in ``post_worker_init``, on the worker's main thread."""
        return None

    def serving(self) -> Callable[[], object] | None:
        """What tells apart the thread, greenlet or task serving a request: a function the request core calls when a
        request begins, on the request path (so a C function, one call), or ``None`` when this class serves every
        request on the worker's main thread. It tells where a slow or stuck request's stack is read
        (:mod:`otel_gunicorn._worker.stacks`). The default is the thread: right for any class serving requests on
        threads of its own, which an unknown class may."""
        return threading.get_ident

    def active_connections(self) -> int | None:
        """Client connections this worker holds open right now, or ``None`` if it keeps no readable count."""
        return None

    def connection_limit(self) -> int | None:
        """The most client connections this worker holds open at once, or ``None`` if nothing enforces one."""
        return None

    def thread_pool(self) -> ThreadPool | None:
        """This worker's request threads, or ``None`` if it has no thread pool (or it cannot be read)."""
        return None

    def event_loop(self) -> Any:
        """The event loop this worker serves requests on (an asyncio loop, or gevent's hub loop), or ``None``: a
        thread-based class, or a loop that does not exist yet. Called on the worker's main thread in
        ``post_worker_init``, then from the metric reader until it returns a loop
        (:mod:`otel_gunicorn._worker.loop_time` measures how busy that loop is)."""
        return None


def absent_on_error(read: Callable[[_T], _R | None]) -> Callable[[_T], _R | None]:
    """Wrap a one-argument reader so that any exception it raises makes its value absent (``None``)."""

    @functools.wraps(read)
    def guarded(arg: _T) -> _R | None:
        try:
            return read(arg)
        except Exception:  # noqa: BLE001 - a metric callback must never raise into the SDK or the worker
            return None

    return guarded


def count(value: object) -> int | None:
    """``value`` if it is a non-negative ``int`` (a ``bool`` is not a count), else ``None``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def size(container: object) -> int | None:
    """``len(container)``, or ``None`` if it is missing or has no length. Never iterates it."""
    if container is None:
        return None
    try:
        return len(container)  # type: ignore[arg-type]
    except TypeError:
        return None


# (module, qualname) of a worker class -> (module under this package, reader class). Matched by name along the
# worker's MRO so that choosing never imports gevent, tornado or uvicorn: a worker of that class already did.
_READERS: dict[tuple[str, str], tuple[str, str]] = {
    ("gunicorn.workers.sync", "SyncWorker"): ("sync", "SyncReader"),
    ("gunicorn.workers.gthread", "ThreadWorker"): ("gthread", "ThreadWorkerReader"),
    # GeventPyWSGIWorker subclasses GeventWorker; the MRO walk meets it first.
    ("gunicorn.workers.ggevent", "GeventPyWSGIWorker"): ("gevent", "GeventPyWSGIReader"),
    ("gunicorn.workers.ggevent", "GeventWorker"): ("gevent", "GeventReader"),
    ("gunicorn.workers.gasgi", "ASGIWorker"): ("asgi", "ASGIReader"),
    ("gunicorn.workers.gtornado", "TornadoWorker"): ("tornado", "TornadoReader"),
    # uvicorn-worker >= 0.3 defines the class in uvicorn_worker._workers, earlier releases in uvicorn_worker.workers;
    # uvicorn.workers is uvicorn's own deprecated copy. UvicornH11Worker subclasses it.
    ("uvicorn_worker._workers", "UvicornWorker"): ("uvicorn", "UvicornReader"),
    ("uvicorn_worker.workers", "UvicornWorker"): ("uvicorn", "UvicornReader"),
    ("uvicorn.workers", "UvicornWorker"): ("uvicorn", "UvicornReader"),
}


def state_reader(worker: Any) -> WorkerStateReader:
    """The reader for ``worker``'s class (or the nearest known base class), else the base reader."""
    for cls in type(worker).__mro__:
        found = _READERS.get((cls.__module__, cls.__qualname__))
        if found is not None:
            module, name = found
            # Imported here: the variant modules import this package for the interface.
            reader_class: type[WorkerStateReader] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
            return reader_class(worker)
    return WorkerStateReader(worker)
