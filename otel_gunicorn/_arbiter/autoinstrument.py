"""``opentelemetry-instrument gunicorn -c python:otel_gunicorn.conf ...``: otel_gunicorn takes the metrics pipeline
over from opentelemetry-distro, and leaves it traces and logs (docs/opentelemetry-instrument.md).

Runs in the gunicorn arbiter, before any fork, in three steps:

1. :func:`pre_instrument`, an ``opentelemetry_pre_instrument`` entry point (pyproject.toml). opentelemetry-instrument
   puts a ``sitecustomize`` on ``PYTHONPATH`` whose ``initialize()`` runs at interpreter start, in this order: the
   distro (``setdefault`` of ``OTEL_*_EXPORTER=otlp``), the configurator — which builds an SDK MeterProvider, starts
   the Prometheus reader's HTTP server right there when ``OTEL_METRICS_EXPORTER`` names ``prometheus``, and sets the
   provider as the global one — then every ``opentelemetry_pre_instrument`` entry point, then every instrumentor's
   ``instrument()``. Some instrumentors make their instruments inside ``instrument()`` (Django, requests), others
   when the framework's object is built (Flask, in the worker). So here, between the configurator and the
   instrumentors, and only in a process that is gunicorn, the distro's provider is taken off the API's global slot
   (:func:`otel_gunicorn._otel_compat.reset_meter_provider`) and held in :data:`STATE`: every meter made from now on,
   in the arbiter or in a worker, is the API's proxy, which binds to the provider otel_gunicorn sets in each worker
   after the fork — so the instrumentations' metrics are merged like the application's own.
2. :func:`take_over`, when gunicorn loads its configuration and so imports :mod:`otel_gunicorn.hooks` (before
   ``--daemon`` forks, before ``--preload`` imports the application): the held provider is shut down, and the
   distro's Prometheus HTTP server is closed, which frees the port for otel_gunicorn's endpoint.
3. :func:`report`, from ``on_starting`` once gunicorn's logging is set up: one line on what was stopped, or that
   metrics are off, or a warning when a global SDK MeterProvider is still set in the arbiter (its metrics would not be
   merged).

If otel_gunicorn's hooks never take over (gunicorn run with another configuration), the held provider goes back to
the global slot just before the first fork (the "distro meter provider" stage of :data:`otel_gunicorn._fork.STAGES`),
so the distro behaves exactly as without otel_gunicorn.

Why a scan of the garbage collector's objects for the distro's Prometheus server: the Prometheus reader the
configurator builds (``_AutoPrometheusMetricReader``) calls ``prometheus_client.start_http_server`` and drops the
``(server, thread)`` it returns, and ``PrometheusMetricReader.shutdown`` only unregisters its collector, so nothing
public leads to that server. The cleaner ways were tried against opentelemetry-instrumentation 0.66b2 and do not work:

- setting ``OTEL_METRICS_EXPORTER`` (or wrapping ``start_http_server``) before the configurator runs: the only code
  that runs before it is the distro, and only one distro is loaded (the first ``opentelemetry_distro`` entry point,
  in no defined order, or ``OTEL_PYTHON_DISTRO``): a distro of ours would fight opentelemetry-distro. A ``.pth`` file
  would run in every Python process of the environment. ``opentelemetry_pre_instrument`` runs after the configurator
  (``_load.py``: ``_load_configurators()`` then ``_load_instrumentors()``, whose first loop is that group);
- our own ``opentelemetry_configurator``: only the first one found runs, the others are skipped with a warning;
- finding the serving thread through ``threading.enumerate()``: its server is only reachable through the
  interpreter's private ``Thread._target``;
- closing the listening descriptor found through ``/proc/self/fd``: the serving thread then spins on a dead socket.

So the scan runs once, in the arbiter, only when a server can be there (a provider was held, ``prometheus_client``'s
exposition module is loaded) and keeps only prometheus_client's server class on the reader's port.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

from opentelemetry import metrics

from otel_gunicorn._config import Config, distro_prometheus_port
from otel_gunicorn._fork import FORK
from otel_gunicorn._otel_compat import reset_meter_provider

_log = logging.getLogger("otel_gunicorn")


def is_gunicorn(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether this interpreter runs gunicorn: the ``gunicorn`` script, or ``python -m gunicorn``."""
    if argv and os.path.basename(argv[0]) == "gunicorn":
        return True
    return any(a == "-m" and b == "gunicorn" for a, b in zip(orig_argv, orig_argv[1:]))


def pre_instrument() -> None:
    """``opentelemetry_pre_instrument`` entry point: in gunicorn, hold the configurator's MeterProvider aside.

    Loaded in every process ``opentelemetry-instrument`` starts, so it imports the arbiter's state only once it knows
    this process is gunicorn under an SDK MeterProvider.
    """
    try:
        if not is_gunicorn(sys.argv, getattr(sys, "orig_argv", [])):
            return
        from opentelemetry.sdk.metrics import MeterProvider

        provider = metrics.get_meter_provider()
        if not isinstance(provider, MeterProvider):  # no configurator ran, or it set none: nothing to hold
            return
        from otel_gunicorn._arbiter.runtime import STATE

        reset_meter_provider()
        STATE.distro_meter_provider = provider
        FORK.join("distro meter provider", before=put_back)
    except Exception:  # noqa: BLE001 - auto-instrumentation must go on whatever happens here
        _log.debug("otel_gunicorn: pre_instrument failed", exc_info=True)


def take_over() -> None:
    """Shut the held provider down and close the distro's Prometheus HTTP server (nothing when nothing is held).

    Called in the arbiter while gunicorn loads its configuration: before any fork, so the server's thread still runs
    (``shutdown`` waits for it). The provider has no instruments (all were made after :func:`pre_instrument`), so its
    shutdown exports nothing.
    """
    from otel_gunicorn._arbiter.runtime import STATE

    provider, STATE.distro_meter_provider = STATE.distro_meter_provider, None
    if provider is None:
        return
    stopped = ["its MeterProvider"]
    try:
        provider.shutdown(timeout_millis=1000)
        for server in prometheus_servers(distro_prometheus_port(os.environ)):
            host, port = server.server_address[:2]
            server.shutdown()
            server.server_close()
            stopped.append(f"its Prometheus endpoint on {host}:{port}")
    except Exception:  # noqa: BLE001 - whatever is left running, the workers still report to otel_gunicorn
        _log.warning("otel_gunicorn: stopping opentelemetry-instrument's MeterProvider failed", exc_info=True)
    STATE.distro_stopped = tuple(stopped)


def put_back() -> None:
    """Before every fork of this process: a provider nobody took over goes back to the global slot (once)."""
    from otel_gunicorn._arbiter.runtime import STATE

    provider, STATE.distro_meter_provider = STATE.distro_meter_provider, None
    if provider is not None:
        metrics.set_meter_provider(provider)


def prometheus_servers(port: int | None) -> list[Any]:
    """prometheus_client's HTTP servers listening on ``port`` in this process (see the module docstring for why a
    scan); none when prometheus_client's exposition module was never imported."""
    exposition = sys.modules.get("prometheus_client.exposition")
    server_class = getattr(exposition, "ThreadingWSGIServer", None)
    if server_class is None or port is None:
        return []
    return [o for o in gc.get_objects() if isinstance(o, server_class) and tuple(o.server_address)[1:2] == (port,)]


def report(config: Config) -> None:
    """``on_starting``, before any fork: one line on who owns the metrics when it is not plain otel_gunicorn."""
    from otel_gunicorn._arbiter.runtime import STATE

    if not config.enabled:
        return
    if not config.metrics_enabled:
        _log.info(
            "otel_gunicorn: metrics are off: OTEL_METRICS_EXPORTER=none (opentelemetry-instrument's "
            "--metrics_exporter none sets it); unset it, or set it to prometheus or otlp, to turn them on"
        )
    elif STATE.distro_stopped:
        exporters = ",".join(sorted(config.metrics_exporters))
        default = " (opentelemetry-distro's default when the variable is unset)" if exporters == "otlp" else ""
        _log.info(
            "otel_gunicorn: opentelemetry-instrument's metrics set-up stopped (%s): every worker's metrics, the "
            "instrumentations' included, are merged by otel_gunicorn and exported with OTEL_METRICS_EXPORTER=%s%s",
            ", ".join(STATE.distro_stopped),
            exporters,
            default,
        )
    from opentelemetry.sdk.metrics import MeterProvider

    provider = metrics.get_meter_provider()
    if config.metrics_enabled and isinstance(provider, MeterProvider):
        _log.warning(
            "otel_gunicorn: a global MeterProvider (%s.%s) was set in the arbiter before any worker forked; every "
            "worker inherits it, and the metrics recorded through it are not merged. Do not set one before the fork "
            "(in the configuration file, or a --preload application), or start gunicorn as 'opentelemetry-instrument "
            "gunicorn ...'",
            type(provider).__module__,
            type(provider).__qualname__,
        )
