"""The dashboard's "Worker health" row: memory, CPU, garbage collection, descriptors and threads per worker slot.

Used by :mod:`.dashboard` (the operator-kit command, from a developer's shell: ``make docs``); never inside gunicorn.
Its own module because the row is the dashboard's largest. The process series are the arbiter's reads of each
worker's ``/proc`` (one series per ``gunicorn.worker.slot``; the arbiter's own have an empty slot label), the
garbage-collector series the workers' own (docs/metrics.md).
"""

from __future__ import annotations

from typing import Any

from otel_gunicorn import _instruments as catalogue
from otel_gunicorn._operator_kit import MEMORY_GROWTH_PER_HOUR
from otel_gunicorn._operator_kit.grafana import GRID_WIDTH, legend, timeseries
from otel_gunicorn._operator_kit.promql import (
    DESCRIPTORS,
    GC_COLLECTIONS,
    GC_GENERATION,
    GC_PAUSE,
    MEMORY,
    OF_A_WORKER,
    OF_THE_ARBITER,
    PROCESS_THREADS,
    SLOT,
    WORKER_LIMIT,
    aggregate,
    cpu_cores,
    quantile,
    series,
)

PER_SLOT = ["instance", SLOT]
SLOT_LEGEND = legend("instance") + " slot " + legend(SLOT)
ARBITER_LEGEND = legend("instance") + " arbiter"


def worker_health(where: tuple[str, ...], window: str) -> list[dict[str, Any]]:
    """The row's panels; ``where``: the dashboard's label matchers, ``window``: the range of its rates."""
    half, third = GRID_WIDTH // 2, GRID_WIDTH // 3
    return [
        _memory_per_slot(where, half),
        _memory_at_the_limit(where, half),
        timeseries(
            "CPU per worker slot",
            "CPU time used per second, user and system together (process.cpu.time): 100 % is one core busy. "
            f"{catalogue.PROCESS_CPU_TIME.meaning}",
            [
                (cpu_cores(PER_SLOT, where, window, OF_A_WORKER), SLOT_LEGEND),
                (cpu_cores(["instance"], where, window, OF_THE_ARBITER), ARBITER_LEGEND),
            ],
            "percentunit",
            width=half,
        ),
        timeseries(
            "Garbage collection pauses (p99)",
            f"99th percentile of {catalogue.GC_PAUSE.name} by generation, over the workers. "
            f"{catalogue.GC_PAUSE.meaning}",
            [(quantile(0.99, GC_PAUSE, [GC_GENERATION], where, window), "generation " + legend(GC_GENERATION))],
            "s",
            width=half,
        ),
        timeseries(
            "Garbage collections per second",
            f"Collections per second by generation, over the workers. {catalogue.GC_COLLECTIONS.meaning}",
            [
                (
                    aggregate("sum", [GC_GENERATION], f"rate({series(GC_COLLECTIONS, where)}[{window}])"),
                    "generation " + legend(GC_GENERATION),
                )
            ],
            width=third,
        ),
        _per_slot_and_arbiter("Open file descriptors", catalogue.PROCESS_DESCRIPTORS, DESCRIPTORS, where, third),
        _per_slot_and_arbiter("Threads", catalogue.PROCESS_THREADS, PROCESS_THREADS, where, third),
    ]


def _memory_per_slot(where: tuple[str, ...], width: int) -> dict[str, Any]:
    workers = series(MEMORY, where, OF_A_WORKER)
    return timeseries(
        "Memory per worker slot (resident)",
        "Resident memory of the worker holding each slot (process.memory.usage), with the largest and the median "
        "worker of each server. A slot's line drops when its worker is replaced (max_requests, a crash): a line that "
        "climbs between drops is a worker that grows, and how high it gets before its replacement is what "
        'max_requests bounds (docs/usage.md, "Tuning max_requests from these numbers"). The '
        f"GunicornWorkerMemoryGrowing alert fires for a slot that grows by more than {MEMORY_GROWTH_PER_HOUR:.0%} of "
        "its size per hour, steadily.",
        [
            (aggregate("max", PER_SLOT, workers), SLOT_LEGEND),
            (aggregate("max", ["instance"], workers), legend("instance") + " largest"),
            (f"quantile by (instance) (0.5, {workers})", legend("instance") + " median"),
        ],
        "bytes",
        width=width,
    )


def _memory_at_the_limit(where: tuple[str, ...], width: int) -> dict[str, Any]:
    workers = series(MEMORY, where, OF_A_WORKER)
    limit = aggregate("sum", ["instance"], series(WORKER_LIMIT, where))
    return timeseries(
        "Memory at the worker limit",
        "What the server takes now (its workers and its arbiter), and what gunicorn.worker.limit workers would take "
        "were each as large as the largest or the median worker today: the figure to size a container's memory "
        "limit against, and to check before raising the worker count (TTIN) or max_requests. Pages shared "
        "copy-on-write with the arbiter count in every worker, so all three overstate what the server uses.",
        [
            (aggregate("sum", ["instance"], series(MEMORY, where)), legend("instance") + " now"),
            (f"{aggregate('max', ['instance'], workers)} * {limit}", legend("instance") + " limit × largest"),
            (f"quantile by (instance) (0.5, {workers}) * {limit}", legend("instance") + " limit × median"),
        ],
        "bytes",
        width=width,
    )


def _per_slot_and_arbiter(
    title: str, instrument: catalogue.Instrument, metric: str, where: tuple[str, ...], width: int
) -> dict[str, Any]:
    return timeseries(
        f"{title} per worker slot",
        f"{instrument.description} {instrument.meaning}",
        [
            (aggregate("max", PER_SLOT, series(metric, where, OF_A_WORKER)), SLOT_LEGEND),
            (aggregate("max", ["instance"], series(metric, where, OF_THE_ARBITER)), ARBITER_LEGEND),
        ],
        width=width,
    )
