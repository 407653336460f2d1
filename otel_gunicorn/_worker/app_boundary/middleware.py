"""What the WSGI and ASGI wrappers share: the per-request core, the mark that counts a request once, the error log.

Runs in a worker, on the thread, greenlet or event loop serving the request: nothing here may block or raise into
the application.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._worker.requests import RequestObserver

_log = logging.getLogger("otel_gunicorn")

#: environ / scope key marking a request already measured, so that an application wrapped twice is counted once
OBSERVED = "otel_gunicorn.observed"


class BoundaryMiddleware:
    """The application and the observer every request is measured by; subclasses speak WSGI or ASGI."""

    #: the interface's name in log lines
    interface = ""

    def __init__(self, app: Any, observer: RequestObserver) -> None:
        self.app = app
        self.observer = observer
        self._errors = RateLimitedLogger(_log)

    @staticmethod
    def claim(carrier: MutableMapping[str, Any]) -> bool:
        """Mark the request's environ or scope as measured; False when a wrapper further out already did."""
        if OBSERVED in carrier:
            return False
        carrier[OBSERVED] = True
        return True

    def log_error(self, step: str, exc: Exception) -> None:
        """A telemetry step failed: log it at most once a minute per step; the request goes on unmeasured."""
        self._errors.log(
            logging.WARNING, step, "otel_gunicorn: %s request telemetry failed (%s): %r", self.interface, step, exc
        )
