"""gunicorn server hooks that turn otel_gunicorn on.

Use them from your own config file::

    # gunicorn.conf.py
    from otel_gunicorn.hooks import *  # noqa: F403

gunicorn takes one function per hook. To run your own code in a hook otel_gunicorn also uses, define the hook and
call ours from it (``docs/usage.md``, "Keeping your own hooks")::

    from otel_gunicorn import hooks as otel_hooks

    def post_fork(server, worker):
        otel_hooks.post_fork(server, worker)
        ...  # yours

Forgetting that call does not switch anything off: the first of our arbiter hooks to run chains ours behind every
hook of yours (:mod:`otel_gunicorn._hook_chain`), so ours still runs, after yours, and one warning names the hook.

Each hook is a thin adapter: it names the process it runs in and delegates to the arbiter or the worker side. The
two dirty hooks run in gunicorn's dirty processes (gunicorn >= 25 with ``dirty_apps``, docs/dirty-workers.md); older
gunicorn releases ignore them, and without ``dirty_apps`` gunicorn never calls them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from otel_gunicorn import _handoff
from otel_gunicorn._arbiter import autoinstrument as _autoinstrument
from otel_gunicorn._arbiter import exports as _exports
from otel_gunicorn._arbiter import runtime as _arbiter
from otel_gunicorn._gunicorn_log import forward_to_gunicorn
from otel_gunicorn._hook_chain import HookChain
from otel_gunicorn._worker import dirty as _dirty
from otel_gunicorn._worker import runtime as _worker
from otel_gunicorn._worker.process_state import WORKER as _WORKER

__all__ = [
    "child_exit",
    "dirty_worker_init",
    "on_dirty_starting",
    "on_exit",
    "on_reload",
    "on_starting",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "pre_request",
    "when_ready",
    "worker_abort",
    "worker_exit",
]

_log = logging.getLogger("otel_gunicorn")

# gunicorn imports this module while it loads its configuration, in the arbiter, before --daemon forks and before
# --preload imports the application: under opentelemetry-instrument, stop the distro's metrics set-up now.
_autoinstrument.take_over()


def on_starting(server: Any) -> None:
    """Arbiter, before listeners exist: read the configuration; a bad value stops gunicorn here, before any fork.
    With ``dirty_apps``, also reserve the channel for the dirty arbiter, which gunicorn forks before ``when_ready``."""
    _CHAIN.ours_called("on_starting")
    _chain_into(server)
    _starting(server)


def when_ready(server: Any) -> None:
    """Arbiter, listeners bound, before the first worker fork: start the channel and the exporters."""
    _CHAIN.ours_called("when_ready")
    _chain_into(server)
    _ready(server)


def on_reload(server: Any) -> None:
    """Arbiter, after a HUP rebuilt gunicorn's configuration: chain our hooks into the new one."""
    _CHAIN.ours_called("on_reload")
    _chain_into(server)


def pre_fork(server: Any, worker: Any) -> None:
    """Arbiter, just before a worker forks: give it the smallest free ``gunicorn.worker.slot``."""
    _CHAIN.ours_called("pre_fork")
    _chain_into(server)
    # the user's when_ready replaced ours without calling it (and ours was not chained in time)
    if not _arbiter.STATE.ready:
        _CHAIN.report_forgotten("when_ready")
        _ready(server)
    runtime = _arbiter.current()
    if runtime is not None:
        runtime.assign_slot(worker)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, right after the fork (before gevent patches): log lines start carrying the worker's slot. (The
    at-fork handler has already closed the arbiter's sockets; the SDK objects wait for post_worker_init.)"""
    _CHAIN.ours_called("post_fork")
    _worker.forked(server, worker)


def post_worker_init(worker: Any) -> None:
    """Worker, application loaded, just before serving: build the worker's MeterProvider."""
    _CHAIN.ours_called("post_worker_init")
    _worker.start(worker)


def pre_request(worker: Any, req: Any) -> None:
    """Worker, on the thread/greenlet/loop about to run the request: count it in flight, record its queue time."""
    if _CHAIN.active:  # tested here rather than inside: this runs on every request
        _CHAIN.ours_called("pre_request")
    _WORKER.request_started(req)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Worker, after the response (streamed body included) is sent: record the request's duration."""
    if _CHAIN.active:
        _CHAIN.ours_called("post_request")
    _WORKER.request_finished(req, environ, resp)


def worker_abort(worker: Any) -> None:
    """Worker, aborted by the arbiter for missing ``--timeout`` (SIGABRT), just before it exits: each request it was
    serving gets a log line with its stack, and is recorded as failed with ``error.type="timeout"``."""
    _CHAIN.ours_called("worker_abort")
    _worker.aborting(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """Normally the worker on a graceful exit: send its final report. gunicorn also calls it in the arbiter when
    the worker was already gone (ESRCH); there it marks the worker dead."""
    _CHAIN.ours_called("worker_exit")
    if os.getpid() == getattr(server, "pid", None):
        runtime = _arbiter.current()
        if runtime is not None:
            runtime.worker_exited(worker)
    else:
        _worker.shutdown()


def child_exit(server: Any, worker: Any) -> None:
    """Arbiter, after reaping a worker: its gauges disappear and its totals are kept."""
    _CHAIN.ours_called("child_exit")
    runtime = _arbiter.current()
    if runtime is not None:
        runtime.worker_exited(worker, reaped=True)


def on_dirty_starting(arbiter: Any) -> None:
    """Dirty arbiter (gunicorn >= 25), before it forks its dirty workers: report the pool's worker limit to the
    arbiter after each of its worker-management runs."""
    _CHAIN.ours_called("on_dirty_starting")
    _dirty.arbiter_starting(arbiter)


def dirty_worker_init(worker: Any) -> None:
    """Dirty worker (gunicorn >= 25), dirty apps loaded, just before serving: build its MeterProvider, measure its
    calls, and send a final report when it stops (gunicorn's ``dirty_worker_exit`` runs in the dirty arbiter)."""
    _CHAIN.ours_called("dirty_worker_init")
    _dirty.worker_starting(worker)


def on_exit(server: Any) -> None:
    """Arbiter, shutting down: stop the endpoint and the channel, remove the socket directory."""
    _CHAIN.ours_called("on_exit")
    _arbiter.stop()


# ---------------------------------------------------------------- our hooks behind the user's own

#: hooks that run in workers (``worker_exit`` mostly does too): a forgotten one is reported by slot 0 only, so a
#: server logs it once rather than once per worker
_WORKER_HOOKS = frozenset({"post_fork", "post_worker_init", "pre_request", "post_request", "worker_abort"})


def _warn_forgotten(name: str) -> None:
    if name in _WORKER_HOOKS and _handoff.worker_slot() not in (None, 0):
        return
    _log.warning(
        "otel_gunicorn: your gunicorn hook %s does not call otel_gunicorn.hooks.%s; otel_gunicorn ran it after "
        "yours. Call it from your %s to silence this (docs/usage.md, keeping your own hooks).",
        name,
        name,
        name,
    )


_CHAIN = HookChain({name: globals()[name] for name in __all__}, _warn_forgotten)

# Whether our first two arbiter hooks did their work (``_arbiter.STATE.started`` / ``.ready``), so that a later one of
# ours can still do it (with a warning) when the user's hook replaced ours without calling it. Both happen before the
# first fork either way.


def _chain_into(server: Any) -> None:
    """Chain our hooks into gunicorn's configuration; once per configuration object (a HUP builds a new one)."""
    forward_to_gunicorn()  # before anything here can warn
    cfg = getattr(server, "cfg", None)
    if cfg is not None:
        _CHAIN.install(cfg)


def _starting(server: Any) -> None:
    if _arbiter.STATE.started:
        return
    _arbiter.STATE.started = True
    forward_to_gunicorn()
    config = _arbiter.check_config()
    _autoinstrument.report(config)
    _exports.report(config)
    _arbiter.prepare_dirty(server)


def _ready(server: Any) -> None:
    if not _arbiter.STATE.started:
        _CHAIN.report_forgotten("on_starting")
        _starting(server)
    _arbiter.STATE.ready = True
    _arbiter.start(server)
