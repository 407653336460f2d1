"""A logging handler that keeps what was logged, for tests that assert on log messages."""

from __future__ import annotations

import logging


class Records(logging.Handler):
    """Collects (level, message) of every record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))
