"""Bounded polling: how the harness, the tests and the bench wait for something to happen instead of sleeping.

A wait that gives up says what it last read, never a stand-in: pass the reading as ``read`` and the test as
``until`` (``wait_until(server.scrape, 10, until=lambda s: ...)``) rather than a predicate that returns None or False
when the value does not match, which would hide the value it saw. A wait for text in a log reads the log as a
:class:`LogText` (what :meth:`harness.process.LoggedProcess.log` returns) and tests all of it; giving up, it shows
only the log's last lines.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: what a reading that raised this counts as: not yet (a server not up yet, a half-written file)
NOT_YET = (OSError, http.client.HTTPException, ValueError)
#: how many of a log's last lines a wait that gives up shows
LOG_LINES_SHOWN = 20


class LogText(str):
    """A whole log, as a wait reads it: ``until`` tests all of it (``until=lambda log: "Booting worker" in log``), a
    wait that gives up shows its last :data:`LOG_LINES_SHOWN` lines. Otherwise an ordinary str."""


def wait_until(
    read: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
    until: Callable[[T], object] = bool,
) -> T:
    """Call ``read`` until ``until`` accepts what it returned (by default: until it is truthy) and return that value;
    AssertionError after ``timeout`` seconds, showing the last value read.

    A ``read`` that raises OSError, an HTTP client error or ValueError counts as not yet; its exception is shown in
    the timeout message when it was the last reading.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = read()
        except NOT_YET as exc:
            last = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value read: {shown(last)}")
        time.sleep(interval)


def shown(value: object) -> str:
    """``value`` for a failure message: a log (:class:`LogText`) as its last lines, another multi-line text (a
    screen) as its lines, anything else as its repr."""
    if isinstance(value, LogText):
        lines = value.splitlines()
        which = "all" if len(lines) <= LOG_LINES_SHOWN else f"the last {LOG_LINES_SHOWN}"
        return f"the log, {which} of its {len(lines)} lines:\n" + "\n".join(lines[-LOG_LINES_SHOWN:])
    if isinstance(value, str) and "\n" in value:
        return "\n" + value
    return repr(value)
