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

Each hook is a thin adapter: it names the process it runs in and delegates to the arbiter or the worker side. The
two dirty hooks run in gunicorn's dirty processes (gunicorn >= 25 with ``dirty_apps``, docs/dirty-workers.md); older
gunicorn releases ignore them, and without ``dirty_apps`` gunicorn never calls them.
"""

from __future__ import annotations

import os
from typing import Any

from otel_gunicorn._arbiter import runtime as _arbiter
from otel_gunicorn._gunicorn_log import forward_to_gunicorn
from otel_gunicorn._worker import dirty as _dirty
from otel_gunicorn._worker import runtime as _worker

__all__ = [
    "child_exit",
    "dirty_worker_init",
    "on_dirty_starting",
    "on_exit",
    "on_starting",
    "post_fork",
    "post_request",
    "post_worker_init",
    "pre_fork",
    "pre_request",
    "when_ready",
    "worker_exit",
]


def on_starting(server: Any) -> None:
    """Arbiter, before listeners exist: read the configuration; a bad value stops gunicorn here, before any fork.
    With ``dirty_apps``, also reserve the channel for the dirty arbiter, which gunicorn forks before ``when_ready``."""
    forward_to_gunicorn()
    _arbiter.check_config()
    _arbiter.prepare_dirty(server)


def when_ready(server: Any) -> None:
    """Arbiter, listeners bound, before the first worker fork: start the channel and the exporters."""
    _arbiter.start(server)


def pre_fork(server: Any, worker: Any) -> None:
    """Arbiter, just before a worker forks: give it the smallest free ``gunicorn.worker.slot``."""
    runtime = _arbiter.current()
    if runtime is not None:
        runtime.assign_slot(worker)


def post_fork(server: Any, worker: Any) -> None:
    """Worker, right after the fork (before gevent patches): log lines start carrying the worker's slot. (The
    at-fork handler has already closed the arbiter's sockets; the SDK objects wait for post_worker_init.)"""
    _worker.forked(server, worker)


def post_worker_init(worker: Any) -> None:
    """Worker, application loaded, just before serving: build the worker's MeterProvider."""
    _worker.start(worker)


def pre_request(worker: Any, req: Any) -> None:
    """Worker, on the thread/greenlet/loop about to run the request: count it in flight, record its queue time."""
    _worker.request_started(req)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """Worker, after the response (streamed body included) is sent: record the request's duration."""
    _worker.request_finished(req, resp)


def worker_exit(server: Any, worker: Any) -> None:
    """Normally the worker on a graceful exit: send its final report. gunicorn also calls it in the arbiter when
    the worker was already gone (ESRCH); there it marks the worker dead."""
    if os.getpid() == getattr(server, "pid", None):
        runtime = _arbiter.current()
        if runtime is not None:
            runtime.worker_exited(worker)
    else:
        _worker.shutdown()


def child_exit(server: Any, worker: Any) -> None:
    """Arbiter, after reaping a worker: its gauges disappear and its totals are kept."""
    runtime = _arbiter.current()
    if runtime is not None:
        runtime.worker_exited(worker)


def on_dirty_starting(arbiter: Any) -> None:
    """Dirty arbiter (gunicorn >= 25), before it forks its dirty workers: report the pool's worker limit to the
    arbiter after each of its worker-management runs."""
    _dirty.arbiter_starting(arbiter)


def dirty_worker_init(worker: Any) -> None:
    """Dirty worker (gunicorn >= 25), dirty apps loaded, just before serving: build its MeterProvider, measure its
    calls, and send a final report when it stops (gunicorn's ``dirty_worker_exit`` runs in the dirty arbiter)."""
    _dirty.worker_starting(worker)


def on_exit(server: Any) -> None:
    """Arbiter, shutting down: stop the endpoint and the channel, remove the socket directory."""
    _arbiter.stop()
