"""Averages over one report interval, from running totals: how the worker turns seconds into a gauge.

Runs in a worker, on the metric reader (once per report). Pure: the caller passes every reading, so the arithmetic is
tested without clocks. A gauge built on it is the one kind of callback here that keeps state — the previous reading —
because an average over the interval needs where the interval began.
"""

from __future__ import annotations

__all__ = ["Rate"]


class Rate:
    """Growth per second of a running total between successive readings (e.g. busy seconds → busy share)."""

    def __init__(self, now: float, total: float) -> None:
        self._last = (now, total)

    def per_second(self, now: float, total: float) -> float | None:
        """(total - previous total) / (now - previous now), never negative; ``None`` if no time passed (the
        previous reading is kept then)."""
        last_now, last_total = self._last
        elapsed = now - last_now
        if elapsed <= 0:
            return None
        self._last = (now, total)
        return max((total - last_total) / elapsed, 0.0)
