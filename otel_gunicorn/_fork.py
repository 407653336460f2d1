"""The process's one ``os.register_at_fork`` registration, and the fair lock that sections a fork may cut through use.

Runs in every process of a server that may fork: the arbiter (new workers, HUP, TTIN, ``max_requests``, the USR2
re-exec, which ``pre_fork`` never sees) and a worker whose application forks. Hazard: ``fork()`` copies the address
space with every lock as it is at that instant; a lock another thread held then stays held for ever in the child,
whose first use of it hangs. gunicorn's own control-socket thread is made safe the same way (``gunicorn/ctl``).

Every part of otel_gunicorn that keeps such a lock joins :data:`FORK` under one of the :data:`STAGES`. Before a fork
the stages run in the written order, each taking its lock; after it they run in reverse, releasing in the parent and
resetting in the child (:meth:`ForkLock.reset_in_child`: whoever held the lock is not in the child).

The distro meter provider comes first and takes no lock: under ``opentelemetry-instrument`` without otel_gunicorn's
hooks, it puts the provider it held aside back as the global one before the first fork, so that the workers inherit
it (:mod:`otel_gunicorn._arbiter.autoinstrument`).

The order matters: **the arbiter runtime's lock before the log-writing lock**. Arbiter threads log while they hold the
runtime lock (a warning in the middle of merging a report). Were the log lock taken first, the fork would hold it
while waiting for the runtime lock, and such a thread would hold the runtime lock while waiting for the log lock: both
would wait out :data:`FORK_WAIT`, at every fork. The application's instruments come last: their locks are only
replaced in the child, never taken before the fork, since a request thread may hold one for as long as it likes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType

_log = logging.getLogger("otel_gunicorn")

#: the stages, in the order their locks are taken before a fork (released, or reset in the child, in reverse)
STAGES = ("distro meter provider", "arbiter runtime", "log writing", "app instruments")

#: longest a section waits for an announced fork, and a fork for a running section, before going ahead anyway
FORK_WAIT = 2.0


class ForkLock:
    """A reentrant lock that lets a pending fork go first.

    Python's locks are not fair: under a flood of scrapes, each thread re-taking the lock the moment it is free, a
    fork could wait a long time (and gunicorn's main loop, so its signal handling, with it). So a fork announces
    itself first, and sections entered afterwards wait until it is done (at most ``fork_wait`` seconds).
    """

    def __init__(self, fork_wait: float = FORK_WAIT) -> None:
        self.fork_wait = fork_wait
        self._lock = threading.RLock()
        self._no_fork_pending = threading.Event()
        self._no_fork_pending.set()

    def __enter__(self) -> ForkLock:
        self._no_fork_pending.wait(self.fork_wait)
        self._lock.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    def hold_for_fork(self) -> bool:
        """Before fork: keep new sections out, wait for the running one; False if it did not end in time."""
        self._no_fork_pending.clear()
        return self._lock.acquire(timeout=self.fork_wait)

    def release_after_fork(self, held: bool) -> None:
        """After fork, in the parent: let sections in again."""
        if held:
            self._lock.release()
        self._no_fork_pending.set()

    def reset_in_child(self) -> None:
        """After fork, in the child: a fresh lock, free (the thread that held the old one, if any, is not here)."""
        self._lock = threading.RLock()
        self._no_fork_pending = threading.Event()
        self._no_fork_pending.set()


@dataclasses.dataclass
class _Stage:
    before: Callable[[], None] | None
    after_in_parent: Callable[[], None] | None
    after_in_child: Callable[[], None] | None


class ForkHandlers:
    """The stages' handlers, run by one ``os.register_at_fork`` registration in the order of :data:`STAGES`."""

    def __init__(self, register: Callable[..., None] = os.register_at_fork) -> None:
        self._stages: dict[str, _Stage] = {}
        self._register: Callable[..., None] | None = register

    def join(
        self,
        stage: str,
        *,
        before: Callable[[], None] | None = None,
        after_in_parent: Callable[[], None] | None = None,
        after_in_child: Callable[[], None] | None = None,
    ) -> None:
        """Run these handlers at every fork as ``stage`` (one of :data:`STAGES`); joining again replaces them.

        Registers with the interpreter on the first call only: its handlers cannot be removed, and a child inherits
        them, so one registration serves the process and every process it forks.
        """
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r} is not one of {STAGES}")
        self._stages[stage] = _Stage(before, after_in_parent, after_in_child)
        register, self._register = self._register, None
        if register is not None:
            register(before=self._before, after_in_parent=self._in_parent, after_in_child=self._in_child)

    def _run(self, order: tuple[str, ...], which: str) -> None:
        for name in order:
            stage = self._stages.get(name)
            handler = getattr(stage, which, None)
            if handler is None:
                continue
            try:
                handler()
            except Exception:  # noqa: BLE001 - a failing handler must not cost the others theirs (nor the fork)
                _log.debug("otel_gunicorn: the %s handler of %r failed", which, name, exc_info=True)

    def _before(self) -> None:
        self._run(STAGES, "before")

    def _in_parent(self) -> None:
        self._run(STAGES[::-1], "after_in_parent")

    def _in_child(self) -> None:
        self._run(STAGES[::-1], "after_in_child")


#: the process's fork handlers (one registration with the interpreter, whatever joins)
FORK = ForkHandlers()
