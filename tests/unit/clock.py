"""A clock the test moves by hand, for the clock-injected pure cores (lifecycle, rate limiting)."""

from __future__ import annotations


class Clock:
    """Monotonic seconds that change only when the test sets :attr:`now`; call it, or use :meth:`monotonic`."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now
