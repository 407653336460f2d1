"""uvicorn's gunicorn worker (``uvicorn_worker.UvicornWorker``, and uvicorn's deprecated ``uvicorn.workers`` copy).

Connection cap: ``worker.config`` is the ``uvicorn.Config`` the worker builds in ``__init__``; its
``limit_concurrency`` (unset by default, set through a subclass's ``CONFIG_KWARGS``) makes uvicorn answer 503 once
``len(server_state.connections)`` or ``len(server_state.tasks)`` reaches it (uvicorn/protocols/http/*_impl.py).
Connections over it are still accepted — it is a ceiling on served concurrency, not on accept().

Open connections: ``len(server.server_state.connections)`` of the worker's ``uvicorn.Server`` — every protocol
adds itself in ``connection_made`` and removes itself in ``connection_lost`` (idle keep-alive included).
``UvicornWorker._serve()`` keeps that ``Server`` in a local variable, never on the worker, and nothing the worker
holds points back to it. It is found instead where uvicorn registers it: ``Server.serve()`` runs inside
``Server.capture_signals()`` (uvicorn >= 0.29), which installs the bound method ``server.handle_exit`` with
``signal.signal`` for SIGINT and SIGTERM until serving ends — so ``signal.getsignal(SIGTERM).__self__`` is the
serving ``Server`` (a worker process runs exactly one). The reader accepts it only if it really is a
``uvicorn.server.Server``; before ``serve()`` installs its handlers, after it restores them, with an older uvicorn or
when the application replaced the SIGTERM handler, the value is absent. A subclass that keeps the server as
``self.server`` (as gunicorn's tornado worker does) is read from there first.

Requests: uvicorn's protocols serve the application directly; gunicorn's ``pre_request``/``post_request`` are never
called. ``_serve()`` sets ``config.app = self.wsgi``, so an ASGI 3 application is wrapped in ``post_worker_init``.
Only ASGI 3, decided by uvicorn's own rule for ``interface="auto"`` (``uvicorn.Config.load``): a wrapper is itself
ASGI 3, so wrapping an ASGI 2 application or a factory would change how uvicorn calls it; those, and
``interface="wsgi"``, are left alone without request metrics.

Hazards: read from the metric reader thread while uvicorn's loop mutates the set: only ``len()`` is taken;
``signal.getsignal`` only reads the interpreter's handler table, which any thread may do.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from collections.abc import Callable
from typing import Any

from otel_gunicorn._worker.state import WorkerStateReader, absent_on_error, count, size

# the same function uvicorn's Config.load decides with (uvicorn/_compat.py): asyncio's also sees asgiref's marker
if sys.version_info >= (3, 14):
    from inspect import iscoroutinefunction
else:
    from asyncio import iscoroutinefunction

__all__ = ["UvicornReader"]


class UvicornReader(WorkerStateReader):
    """``UvicornWorker``: ``config.limit_concurrency`` when set; open connections from the serving ``Server``."""

    requests_via_hooks = False

    def serving(self) -> Callable[[], object] | None:
        """The task: uvicorn runs each request's application call in a task of its own (``RequestResponseCycle``),
        in which the application wrapper begins the request."""
        return asyncio.current_task

    @absent_on_error
    def active_connections(self) -> int | None:
        """``len(server.server_state.connections)`` of the serving uvicorn ``Server``, else ``None``."""
        server = getattr(self._worker, "server", None) or _serving_server()
        state = getattr(server, "server_state", None)
        return size(getattr(state, "connections", None))

    @absent_on_error
    def connection_limit(self) -> int | None:
        """``worker.config.limit_concurrency``: past it uvicorn answers 503; ``None`` when unset."""
        return count(getattr(getattr(self._worker, "config", None), "limit_concurrency", None))

    @absent_on_error
    def event_loop(self) -> Any:
        """The loop of the serving ``Server``'s listening servers (``asyncio.Server.get_loop()``, public API); the
        worker creates it in ``run()``, after ``post_worker_init``, so it is found once ``startup()`` has listened."""
        server = getattr(self._worker, "server", None) or _serving_server()
        listening = list(getattr(server, "servers", None) or [])
        return listening[0].get_loop() if listening else None

    def app_interface(self) -> str | None:
        """``"asgi"`` when uvicorn will call the application as ASGI 3, else ``None``."""
        interface = getattr(getattr(self._worker, "config", None), "interface", "auto")
        app = getattr(self._worker, "wsgi", None)
        if app is None or interface not in ("auto", "asgi3"):
            return None
        return "asgi" if interface == "asgi3" or is_asgi3(app) else None


def _serving_server() -> Any:
    """The ``uvicorn.Server`` whose ``handle_exit`` is this process's SIGTERM handler, or None."""
    module = sys.modules.get("uvicorn.server")  # imported by the worker already; never import it here
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return server if module is not None and isinstance(server, module.Server) else None


def is_asgi3(app: Any) -> bool:
    """uvicorn's ``interface="auto"`` rule: a class with ``__await__``, a coroutine function, or an object whose
    ``__call__`` is one."""
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.isfunction(app):
        return iscoroutinefunction(app)
    return iscoroutinefunction(getattr(app, "__call__", None))  # noqa: B004 - uvicorn's rule, as uvicorn has it
