"""Everything otel_gunicorn keeps in a worker process between hooks, in one object: :data:`WORKER`.

Runs in a worker (HTTP or dirty). Written by the worker's hooks on gunicorn's main thread (``post_fork``,
``post_worker_init``, ``dirty_worker_init``, ``worker_exit``); read on every request by ``pre_request`` /
``post_request``. A reader sees all of it at once, and :meth:`WorkerState.reset` (tests) clears it in one call.

Hazard: module state survives the fork. Nothing is set here in the arbiter, so a child starts from the defaults; what
a worker inherits from its arbiter crosses the fork in :mod:`otel_gunicorn._handoff` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


def not_measured(*_args: Any) -> None:
    """Where requests are not measured through the hooks (no runtime, or the application is wrapped instead)."""


@dataclasses.dataclass
class WorkerState:
    """This worker's telemetry and how its request hooks reach it."""

    #: the HTTP worker's runtime (a ``WorkerRuntime``), from ``post_worker_init`` until ``worker_exit``; and the dirty
    #: worker's (a ``DirtyWorkerRuntime``), from ``dirty_worker_init``. Typed ``object`` so that this module, which
    #: both runtimes import, imports neither: each reads its own back through ``isinstance``.
    runtime: object | None = None
    dirty_runtime: object | None = None
    #: the worker listens on sockets of its own (``reuse_port`` on gunicorn >= 24), which it measures itself
    own_listeners: bool = False
    #: what ``hooks.pre_request`` / ``hooks.post_request`` call: the observer's own bound methods once the runtime
    #: measures requests through the hooks, so a request pays no function layer of ours in between
    request_started: Callable[[Any], None] = not_measured
    request_finished: Callable[[Any, Any, Any], None] = not_measured

    def reset(self) -> None:
        """Back to a process no hook has run in."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, field.default)


#: this worker's state (see :class:`WorkerState`)
WORKER = WorkerState()
