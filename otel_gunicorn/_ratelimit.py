"""Logging that cannot flood: one line per key per interval, with the number of repeats it swallowed.

Telemetry failures (an unreachable arbiter, a busy port, a garbage frame) tend to repeat every interval for as long
as the fault lasts; the first occurrence is what an operator needs, the rest is noise in the application's log.
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLogger:
    """Wraps a logger; :meth:`log` emits at most once per ``interval`` seconds for each ``key``."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` was logged less than ``interval`` ago; return whether it was logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            repeats = self._suppressed.pop(key, 0)
        if repeats:
            msg += " (%d similar messages suppressed)"
            args += (repeats,)
        self._logger.log(level, msg, *args)
        return True

    def reset(self, key: str) -> None:
        """Forget ``key`` so the next failure is logged at once (call when the fault has cleared)."""
        with self._lock:
            self._last.pop(key, None)
            self._suppressed.pop(key, None)
