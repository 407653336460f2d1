"""The fork hand-off: what a freshly forked worker inherits from its arbiter, and the worker's slot.

Both process sides import this module downwards and neither imports the other: the arbiter's ``pre_fork`` stores the
slot on gunicorn's Worker object (:data:`SLOT_ATTR`) and its after-fork handler calls :func:`inherit` in the child;
the worker reads :func:`inherited` in ``post_worker_init`` and records its slot with :func:`set_worker_slot` in
``post_fork``, where the log processors (``otel_gunicorn._logs``) read it back with :func:`worker_slot`.

Dirty workers (gunicorn >= 25) are forked by the *dirty arbiter*, which gunicorn forks before ``when_ready``, before
the channel exists and before the at-fork handler is registered. So the arbiter's ``on_starting`` reserves the
channel's path and records it with :func:`reserve_for_dirty`; the dirty arbiter and its dirty workers read it back with
:func:`dirty_link` (plain memory, copied by each ``fork``).

Hazard: module state survives the fork. The arbiter never sets the slot or the (worker) link in itself, so a child
starts from ``None`` until its own hooks run. The dirty link is the exception: it is set in the arbiter, so every
child inherits it, and only the dirty side reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from otel_gunicorn._config import Config

#: attribute the arbiter sets on gunicorn's Worker object in pre_fork: the worker's ``gunicorn.worker.slot``
SLOT_ATTR = "otel_gunicorn_slot"


@dataclasses.dataclass(frozen=True)
class ArbiterLink:
    config: Config
    #: the arbiter's channel socket; None when metrics are off (spans and logs still work)
    channel_path: str | None
    #: the server's resource (service.name, service.instance.id, ...) so a worker's spans and logs match its metrics
    resource_attributes: dict[str, Any]


@dataclasses.dataclass
class Handoff:
    """What crosses the fork, in one object (plain memory: each ``fork`` copies it)."""

    #: set in the child right after the fork; None in the arbiter and outside gunicorn
    link: ArbiterLink | None = None
    #: set in the arbiter's ``on_starting`` when gunicorn will fork a dirty arbiter; inherited by every child
    dirty_link: ArbiterLink | None = None
    #: set once in each worker right after the fork (a child inherits the arbiter's, which is always None)
    slot: int | None = None

    def reset(self) -> None:
        """Back to a process no arbiter handed anything to (tests)."""
        self.link = self.dirty_link = self.slot = None


#: this process's hand-off (see :class:`Handoff`)
HANDOFF = Handoff()


def inherit(config: Config, channel_path: str | None, resource_attributes: dict[str, Any]) -> None:
    """In the child, right after the fork: record what the worker needs to report to its arbiter."""
    HANDOFF.link = ArbiterLink(config, channel_path, resource_attributes)


def inherited() -> ArbiterLink | None:
    """The link to this worker's arbiter, or None outside a worker forked by a running otel_gunicorn arbiter."""
    return HANDOFF.link


def reserve_for_dirty(config: Config, channel_path: str) -> None:
    """In the arbiter's ``on_starting``: where the dirty arbiter and its dirty workers will report (metrics only)."""
    HANDOFF.dirty_link = ArbiterLink(config, channel_path, {})


def dirty_link() -> ArbiterLink | None:
    """The channel a dirty arbiter or dirty worker reports to; None unless the arbiter reserved one for them."""
    return HANDOFF.dirty_link


def slot_of(worker: Any) -> int | None:
    """The slot the arbiter's ``pre_fork`` hook stored on gunicorn's Worker object, or ``None`` when it did not."""
    slot = getattr(worker, SLOT_ATTR, None)
    return slot if isinstance(slot, int) and not isinstance(slot, bool) else None


def set_worker_slot(slot: int | None) -> None:
    """Record this worker's ``gunicorn.worker.slot`` for the log processors; ``None`` removes it.

    Called by the worker after the fork. Slots are small integers the arbiter reuses, so a dashboard can follow
    "worker 2" across restarts, as the metrics do.

    Args:
        slot: The slot the arbiter gave this worker, or ``None`` outside a worker.

    Raises:
        TypeError: If ``slot`` is neither an ``int`` nor ``None``.
    """
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int)):
        raise TypeError(f"slot must be an int or None, not {type(slot).__name__}")
    HANDOFF.slot = slot


def worker_slot() -> int | None:
    """This process's ``gunicorn.worker.slot``: set in a worker, ``None`` in the arbiter and outside gunicorn."""
    return HANDOFF.slot
