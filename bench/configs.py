"""What the CPU-per-request figure compares: worker classes, telemetry configurations and application variants.

A *setup* is one gunicorn master: a worker class, a configuration and an application variant. Every setup of one
worker class runs side by side in one run, its rounds alternating with the others' (see ``cpu.py``).

Configurations:

* ``bare``: gunicorn without ``-c``, no telemetry; the application variant is always ``hello`` (the baseline);
* ``otel``: otel_gunicorn, Prometheus mode (``-c python:otel_gunicorn.conf``, defaults: reports every 5 s);
* ``otlp``: otel_gunicorn, OTLP mode (``OTEL_METRICS_EXPORTER=otlp``) pushing to a local Rotel collector every
  ``OTLP_INTERVAL_MS`` (the arbiter's exporter process does the pushing);
* ``prom``: prometheus_client multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, ``child_exit`` calling
  ``mark_process_dead``), the application recording with prometheus_client;
* ``naive``: opentelemetry-instrumentation's OpenTelemetryMiddleware around the application, and the OpenTelemetry
  SDK (a MeterProvider with a PeriodicExportingMetricReader pushing OTLP to the same collector every
  ``OTLP_INTERVAL_MS``) set up per worker in ``post_fork``: what users try first.

Application variants: ``hello`` records nothing; ``recording`` records one counter and one histogram per request
(the OpenTelemetry API for otel, otlp and naive; prometheus_client for prom).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

OTEL_CONFIG = "python:otel_gunicorn.conf"
#: OTEL_METRIC_EXPORT_INTERVAL of the OTLP configurations (ms): every CPU round of a few seconds sees pushes
OTLP_INTERVAL_MS = 5000


@dataclasses.dataclass(frozen=True)
class WorkerClass:
    key: str
    label: str
    args: tuple[str, ...]
    connections: int  # wrk -c
    asgi: bool = False
    #: whose figures the targets judge (the others are reported)
    judged: bool = False


WORKER_CLASSES = {
    "sync": WorkerClass("sync", "sync", ("-k", "sync"), 4, judged=True),
    "gthread": WorkerClass("gthread", "gthread --threads 4", ("-k", "gthread", "--threads", "4"), 8, judged=True),
    "gevent": WorkerClass("gevent", "gevent", ("-k", "gevent"), 8),
    "asgi": WorkerClass("asgi", "asgi (gunicorn's own)", ("-k", "asgi"), 8, asgi=True),
    "uvicorn": WorkerClass("uvicorn", "uvicorn-worker", ("-k", "uvicorn_worker.UvicornWorker"), 8, asgi=True),
}


@dataclasses.dataclass(frozen=True)
class Configuration:
    key: str
    letter: str
    label: str
    config: str | None
    needs_collector: bool = False
    multiproc_dir: bool = False
    metrics_endpoint: bool = False
    #: variables of otel_gunicorn's own this configuration sets
    settings: tuple[tuple[str, str], ...] = ()


#: the slow-request check's threshold in the "slow" configuration: on, but no bench request ever reaches it, so the
#: figure prices what the check adds to every request (recording the serving thread, one comparison at the end)
SLOW_REQUEST_SECONDS = "10"

CONFIGURATIONS = {
    "bare": Configuration("bare", "a", "bare gunicorn", None),
    "otel": Configuration("otel", "b", "otel_gunicorn, Prometheus", OTEL_CONFIG, metrics_endpoint=True),
    "slow": Configuration(
        "slow",
        "f",
        f"otel_gunicorn, Prometheus, OTEL_GUNICORN_SLOW_REQUEST_SECONDS={SLOW_REQUEST_SECONDS}",
        OTEL_CONFIG,
        metrics_endpoint=True,
        settings=(("OTEL_GUNICORN_SLOW_REQUEST_SECONDS", SLOW_REQUEST_SECONDS),),
    ),
    "otlp": Configuration("otlp", "c", "otel_gunicorn, OTLP to Rotel", OTEL_CONFIG, needs_collector=True),
    "prom": Configuration("prom", "d", "prometheus_client multiprocess", "python:prom_conf", multiproc_dir=True),
    "naive": Configuration("naive", "e", "OTel WSGI/ASGI middleware + SDK per worker", "python:naive_conf", True),
}

VARIANTS = {"hello": "hello world, nothing recorded", "recording": "1 counter + 1 histogram per request"}


@dataclasses.dataclass(frozen=True)
class Setup:
    worker_class: WorkerClass
    configuration: Configuration
    variant: str

    @property
    def key(self) -> str:
        return f"{self.configuration.key}/{self.variant}"

    @property
    def app(self) -> str:
        """``module:callable`` under bench/apps."""
        asgi = self.worker_class.asgi
        if self.configuration.key == "naive":
            return f"naive:{'asgi_' if asgi else ''}{self.variant}_app"
        module = {"hello": "hello", "recording": "recording_prom" if self.configuration.key == "prom" else "recording"}
        return f"{module[self.variant]}:{'asgi_app' if asgi else 'app'}"

    def env(self, *, collector_endpoint: str | None, multiproc_dir: Path | None, metrics_port: int | None) -> dict:
        c = self.configuration
        env: dict[str, str] = dict(c.settings)
        if c.metrics_endpoint:
            env.update(OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1", OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port))
        if c.needs_collector:
            assert collector_endpoint is not None
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=collector_endpoint,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_METRIC_EXPORT_INTERVAL=str(OTLP_INTERVAL_MS),
            )
        if c.key == "otlp":
            env["OTEL_METRICS_EXPORTER"] = "otlp"
        if c.multiproc_dir:
            assert multiproc_dir is not None
            env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
        return env


def setups(worker_class: WorkerClass, configurations: list[str], variants: list[str]) -> list[Setup]:
    """The setups of one worker class: ``bare`` once (hello), ``slow`` once (hello, judged classes only: what the
    slow-request check costs a request), every other configuration in every variant."""
    found = []
    for variant in variants:
        for key in configurations:
            if key == "bare" and variant != "hello":
                continue
            if key == "slow" and (variant != "hello" or not worker_class.judged):
                continue
            found.append(Setup(worker_class, CONFIGURATIONS[key], variant))
    return found
