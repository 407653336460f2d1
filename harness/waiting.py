"""Bounded polling: how the harness, the tests and the bench wait for something to happen instead of sleeping."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy and return that; AssertionError after ``timeout`` seconds.

    A predicate that raises OSError, an HTTP client error or ValueError (a server not up yet, a half-written file)
    counts as not yet; its exception is shown in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)
