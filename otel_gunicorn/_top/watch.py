"""The state ``otel-gunicorn top`` keeps between refreshes: the first and previous scrapes and the frame on screen.

Runs in the operator's terminal. No clock and no I/O: the refresh loop in :mod:`.cli` passes in each scrape (or
each failure) with the times it was taken, which keeps the one rule of the live view testable: a failed refresh
keeps the last good frame and adds the error to it, and the next good one clears it.
"""

from __future__ import annotations

import dataclasses
import datetime

from otel_gunicorn._top.model import Scrape
from otel_gunicorn._top.rates import compare
from otel_gunicorn._top.view import Frame


class Watch:
    """Successive scrapes of one endpoint turned into frames."""

    def __init__(self, url: str, interval: float | None) -> None:
        self.url = url
        self.interval = interval
        self.first: Scrape | None = None
        self.previous: tuple[Scrape, float] | None = None
        self.frame: Frame | None = None

    def observe(self, scrape: Scrape, monotonic: float, wall: datetime.datetime) -> Frame:
        """The frame of a good scrape taken at ``monotonic`` (for rates) and ``wall`` (shown)."""
        if self.first is None:
            self.first = scrape
        before, elapsed = None, 0.0
        if self.previous is not None:
            before, elapsed = self.previous[0], monotonic - self.previous[1]
        rates = compare(scrape, before, elapsed, self.first)
        self.previous = (scrape, monotonic)
        self.frame = Frame(self.url, wall, scrape, rates, self.interval)
        return self.frame

    def failed(self, error: str, wall: datetime.datetime) -> Frame | None:
        """The last good frame with ``error`` on its status line; None before the first good scrape."""
        if self.frame is None:
            return None
        self.frame = dataclasses.replace(self.frame, error=error, failed_at=wall)
        return self.frame
