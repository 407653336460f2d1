"""The arbiter's one lock, held across every fork, and fair to the fork.

Runs in the arbiter. Every arbiter thread does its work — merging a report, rendering a scrape, building an OTLP
snapshot — inside ``with fork_lock:``, and the at-fork handler holds the same lock across ``fork()``, so no thread is
ever half-way through an update when the address space is copied.

Python's locks are not fair: under a flood of scrapes, each thread re-taking the lock the moment it is free, the
fork could wait a long time (gunicorn's main loop, and so its signal handling, waits with it). So a fork announces
itself first, and sections entered afterwards wait until it is done (at most ``FORK_WAIT`` seconds).
"""

from __future__ import annotations

import threading
from types import TracebackType

#: longest a section waits for an announced fork, and a fork for running sections, before going ahead anyway
FORK_WAIT = 2.0


class ForkLock:
    """A reentrant lock that lets a pending fork go first."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._no_fork_pending = threading.Event()
        self._no_fork_pending.set()

    def __enter__(self) -> ForkLock:
        self._no_fork_pending.wait(FORK_WAIT)
        self._lock.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()

    def hold_for_fork(self) -> bool:
        """Before fork: keep new sections out, wait for the running one; False if it did not end in time."""
        self._no_fork_pending.clear()
        return self._lock.acquire(timeout=FORK_WAIT)

    def release_after_fork(self, held: bool) -> None:
        """After fork (in the parent, and in the child where the lock is simply dropped with its runtime)."""
        if held:
            self._lock.release()
        self._no_fork_pending.set()
