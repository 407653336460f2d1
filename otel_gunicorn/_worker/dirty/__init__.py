"""otel_gunicorn in gunicorn's dirty processes (gunicorn >= 25 with ``dirty_apps``).

Two processes report to the arbiter here, as workers do: the *dirty arbiter* (:mod:`.arbiter`, forked by the arbiter
before ``when_ready``) sends the pool's worker limit, and each *dirty worker* (:mod:`.worker`, forked by the dirty
arbiter) builds its MeterProvider after the fork and measures its calls (:mod:`.calls`). Both find the arbiter's
channel through :func:`otel_gunicorn._handoff.dirty_link`; without it (no ``dirty_apps``, metrics off, or an arbiter
without otel_gunicorn's ``on_starting``) they do nothing. The arbiter's side is :mod:`otel_gunicorn._arbiter.dirty`.
"""

from otel_gunicorn._worker.dirty.arbiter import start as arbiter_starting
from otel_gunicorn._worker.dirty.worker import start as worker_starting

__all__ = ["arbiter_starting", "worker_starting"]
