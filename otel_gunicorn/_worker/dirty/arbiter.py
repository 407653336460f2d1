"""The dirty arbiter's part (gunicorn >= 25): it tells the arbiter how many dirty workers it keeps.

Runs in gunicorn's dirty arbiter, an asyncio process the arbiter forks (before ``when_ready``) and that forks and
reaps the dirty workers. Only it knows the pool's target size: ``num_workers``, which starts at ``dirty_workers`` and
moves with TTIN/TTOU sent to it and with ``gunicornc dirty add/remove``. :func:`start` (``on_dirty_starting``) wraps
its ``manage_workers`` coroutine, which gunicorn runs every second and after each change of the target; after each run
the limit goes to the arbiter's channel when it changed since the last report that got through, or a minute passed.

Hazards:

* fork: this process forks the dirty workers. Nothing of ours lives here between reports — no thread, no SDK
  object, no open socket: a report connects, sends one frame and closes, so a dirty worker inherits nothing of it;
* blocking: the send runs on the dirty arbiter's event loop. Connecting to a local unix socket and sending a few
  hundred bytes is immediate, and bounded by :data:`SEND_TIMEOUT` when the arbiter is too busy to accept;
* startup: the first runs come before the arbiter's channel exists (it starts in ``when_ready``): those reports fail
  quietly and the next run retries.
"""

from __future__ import annotations

import inspect
import logging
import socket
import time
from typing import Any

from otel_gunicorn import _handoff
from otel_gunicorn import _instruments as inst
from otel_gunicorn._snapshot import payload_from_snapshot
from otel_gunicorn._wire import FrameKind, encode_frame

_log = logging.getLogger("otel_gunicorn")

#: seconds one report may take to connect and send before it is given up (and retried at the next run)
SEND_TIMEOUT = 0.25
#: seconds after which an unchanged limit is sent again, should the arbiter have missed it
REFRESH = 60.0


class LimitReporter:
    """Sends the dirty arbiter's ``num_workers`` to the arbiter's channel at ``path`` when it needs to."""

    def __init__(self, arbiter: Any, path: str, clock: Any = time.monotonic) -> None:
        self._arbiter = arbiter
        self._path = path
        self._clock = clock
        self._sent: int | None = None
        self._sent_at = 0.0

    def report(self) -> None:
        limit = getattr(self._arbiter, "num_workers", None)
        if not isinstance(limit, int) or isinstance(limit, bool):
            return
        now = self._clock()
        if limit == self._sent and now - self._sent_at < REFRESH:
            return
        frame = encode_frame(FrameKind.SNAPSHOT, payload_from_snapshot({inst.DIRTY_WORKER_LIMIT.meta: {(): limit}}))
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.connect(self._path)
                sock.sendall(frame)
        except OSError as exc:
            _log.debug("otel_gunicorn: the dirty arbiter could not report its worker limit yet: %s", exc)
            return
        self._sent, self._sent_at = limit, now


def start(arbiter: Any) -> None:
    """``on_dirty_starting``: report the pool's limit after each of the dirty arbiter's ``manage_workers`` runs; a
    no-op unless the arbiter reserved a channel for the dirty side."""
    link = _handoff.dirty_link()
    manage = getattr(arbiter, "manage_workers", None)
    if link is None or link.channel_path is None:
        return
    if not inspect.iscoroutinefunction(manage):
        _log.warning("otel_gunicorn: this gunicorn's dirty arbiter has no manage_workers coroutine: no worker limit")
        return
    reporter = LimitReporter(arbiter, link.channel_path)

    async def manage_workers() -> None:
        try:
            await manage()
        finally:
            try:
                reporter.report()
            except Exception:  # noqa: BLE001 - never raise into gunicorn's dirty arbiter
                _log.warning("otel_gunicorn: reporting the dirty worker limit failed", exc_info=True)

    arbiter.manage_workers = manage_workers
