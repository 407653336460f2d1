"""The state ``otel-gunicorn top`` keeps between refreshes: the first scrape, recent ones and the frame on screen.

Runs in the operator's terminal. No clock and no I/O: the refresh loop in :mod:`.cli` passes in each scrape (or
each failure) with the times it was taken, which keeps the rules of the live view testable: rates span whole worker
reports (:func:`~.rates.report_window` over the last ``HISTORY`` seconds of scrapes), and a failed refresh keeps the
last good frame and adds the error to it, and the next good one clears it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime

from otel_gunicorn._top.model import Scrape
from otel_gunicorn._top.rates import Sample, compare
from otel_gunicorn._top.view import Frame

#: seconds of scrapes kept to find a window of whole reports: a few report intervals at the default 5 s
HISTORY = 120.0


class Watch:
    """Successive scrapes of one endpoint turned into frames."""

    def __init__(self, url: str, interval: float | None) -> None:
        self.url = url
        self.interval = interval
        self.first: Scrape | None = None
        self.history: collections.deque[Sample] = collections.deque()
        self.frame: Frame | None = None

    def observe(self, scrape: Scrape, monotonic: float, wall: datetime.datetime) -> Frame:
        """The frame of a good scrape taken at ``monotonic`` (for rates) and ``wall`` (shown)."""
        if self.first is None:
            self.first = scrape
        self.history.append(Sample(scrape, monotonic))
        while self.history[0].at < monotonic - HISTORY:
            self.history.popleft()
        rates = compare(tuple(self.history), self.first)
        self.frame = Frame(self.url, wall, scrape, rates, self.interval)
        return self.frame

    def failed(self, error: str, wall: datetime.datetime) -> Frame | None:
        """The last good frame with ``error`` on its status line; None before the first good scrape."""
        if self.frame is None:
            return None
        self.frame = dataclasses.replace(self.frame, error=error, failed_at=wall)
        return self.frame
