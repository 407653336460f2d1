"""uvicorn's gunicorn worker (``uvicorn_worker.UvicornWorker``, and uvicorn's deprecated ``uvicorn.workers`` copy).

Connection cap: ``worker.config`` is the ``uvicorn.Config`` the worker builds in ``__init__``; its
``limit_concurrency`` (unset by default, set through a subclass's ``CONFIG_KWARGS``) makes uvicorn answer 503 once
``len(server_state.connections)`` or ``len(server_state.tasks)`` reaches it (uvicorn/protocols/http/*_impl.py).
Connections over it are still accepted — it is a ceiling on served concurrency, not on accept().

Open connections are **absent** with the stock worker: ``UvicornWorker._serve()`` keeps the ``uvicorn.Server`` — and
with it ``server.server_state.connections`` — in a local variable, never on the worker; the ``Config`` does not point
back to it, and the protocols that hold ``server_state`` hang off the event loop's servers. Reaching it would take
monkeypatching ``_serve`` or a ``gc.get_referrers()`` walk over the heap, neither of which a metric callback should
do. A subclass that keeps the server as ``self.server`` (as gunicorn's tornado worker does) gets the count read from
``self.server.server_state.connections``.

Requests: uvicorn's protocols serve the application directly; gunicorn's ``pre_request``/``post_request`` are never
called.

Hazards: read from the metric reader thread while uvicorn's loop mutates the set: only ``len()`` is taken.
"""

from __future__ import annotations

from otel_gunicorn._worker.state import WorkerStateReader, absent_on_error, count, size

__all__ = ["UvicornReader"]


class UvicornReader(WorkerStateReader):
    """``UvicornWorker``: ``config.limit_concurrency`` when set; open connections only if the server is reachable."""

    requests_via_hooks = False

    @absent_on_error
    def active_connections(self) -> int | None:
        """``len(worker.server.server_state.connections)`` when a subclass exposes ``server``, else ``None``."""
        state = getattr(getattr(self._worker, "server", None), "server_state", None)
        return size(getattr(state, "connections", None))

    @absent_on_error
    def connection_limit(self) -> int | None:
        """``worker.config.limit_concurrency``: past it uvicorn answers 503; ``None`` when unset."""
        return count(getattr(getattr(self._worker, "config", None), "limit_concurrency", None))
