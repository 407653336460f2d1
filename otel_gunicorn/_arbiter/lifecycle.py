"""Why workers exit: the ledger behind ``gunicorn.worker.exits``.

Runs in the arbiter; pure bookkeeping, called under the runtime lock. gunicorn does not hand ``child_exit`` the exit
status, so the reason is put together from what is known for certain:

* ``worker.aborted`` (set by the arbiter before it kills a worker that missed its heartbeat) ⇒ ``timeout``;
* a *goodbye* the worker sent from ``worker_exit`` (which runs on every exit through gunicorn's own code path) says
  ``normal`` or ``error`` (an exception or a non-zero ``sys.exit``);
* no goodbye at all ⇒ the process was ``killed`` by a signal it could not handle (SIGKILL, the OOM killer, a crash).

The goodbye travels on the channel and may be read after ``child_exit`` ran, so an exit is *settled* only once the
worker is both reaped and its connection drained (see :class:`otel_gunicorn._arbiter.merge.MergeStore`).
"""

from __future__ import annotations

import dataclasses
import time

REASONS = ("timeout", "killed", "error", "normal")
GOODBYE_REASONS = frozenset({"normal", "error"})


@dataclasses.dataclass
class _Exit:
    aborted: bool = False
    reaped_at: float | None = None
    goodbye: str | None = None
    drained: bool = False  # its channel connection closed with the process gone: nothing more can arrive

    @property
    def reaped(self) -> bool:
        return self.reaped_at is not None


class ExitLedger:
    """Counts settled worker exits by reason."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(REASONS, 0)
        self._pending: dict[int, _Exit] = {}

    def goodbye(self, pid: int, reason: str) -> None:
        """The worker announced a graceful (``normal``) or failing (``error``) exit."""
        if reason in GOODBYE_REASONS:
            self._pending.setdefault(pid, _Exit()).goodbye = reason

    def reaped(self, pid: int, aborted: bool, now: float | None = None) -> None:
        """The arbiter reaped the worker (``child_exit``)."""
        entry = self._pending.setdefault(pid, _Exit())
        entry.reaped_at = time.monotonic() if now is None else now
        entry.aborted = aborted

    def drained(self, pid: int) -> None:
        """The worker's connection closed after the process was gone: its last word, if any, is in."""
        self._pending.setdefault(pid, _Exit()).drained = True

    def is_drained(self, pid: int) -> bool:
        entry = self._pending.get(pid)
        return entry is not None and entry.drained

    def reaped_before(self, moment: float) -> list[int]:
        """Reaped, unsettled pids reaped before ``moment`` (monotonic seconds)."""
        return [pid for pid, e in self._pending.items() if e.reaped_at is not None and e.reaped_at < moment]

    def is_reaped(self, pid: int) -> bool:
        entry = self._pending.get(pid)
        return entry is not None and entry.reaped

    def settle(self, pid: int) -> str | None:
        """Count the exit of a reaped worker whose channel is drained; return its reason (None if not reaped)."""
        entry = self._pending.get(pid)
        if entry is None or not entry.reaped:
            return None
        del self._pending[pid]
        reason = "timeout" if entry.aborted else entry.goodbye or "killed"
        self.counts[reason] += 1
        return reason
