"""gunicorn.workers (busy/idle) from the first report, and only for workers that measure their requests.

The arbiter counts a worker busy when it reports requests in flight, idle when it measures its requests (it reports
its average concurrency, gunicorn.worker.concurrency) but has none in flight — also before its first request, when it
has no in-flight series yet. A worker whose requests are not measured (a class without request hooks whose
application cannot be wrapped) reports no concurrency, so there is no busy/idle to make up.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from otel_gunicorn import _instruments as inst
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._arbiter.server_metrics import collect
from otel_gunicorn._snapshot import Snapshot
from otel_gunicorn._worker import app_boundary, server_gauges
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.requests import RequestObserver
from otel_gunicorn._worker.state import WorkerStateReader
from otel_gunicorn._worker.tracing import RequestTracing

BUSY = (("gunicorn.worker.state", "busy"),)
IDLE = (("gunicorn.worker.state", "idle"),)
GET = (("http.request.method", "GET"),)


def arbiter(*pids: int) -> Any:
    return SimpleNamespace(WORKERS={pid: SimpleNamespace() for pid in pids}, LISTENERS=[], num_workers=len(pids))


def worker_counts(server: Any, reports: dict[int, Snapshot]) -> dict[Any, Any] | None:
    store = MergeStore()
    for slot, (pid, snapshot) in enumerate(reports.items()):
        store.report(pid, slot, snapshot)
    return collect(server, store, {}).get(inst.WORKER_COUNT.meta)


def concurrency(value: float = 0.0) -> Snapshot:
    return {inst.CONCURRENCY.meta: {(): value}}


def test_workers_that_measure_requests_but_had_none_are_idle():
    """Two fresh workers: each reports its concurrency, neither has an in-flight series yet: 0 busy, 2 idle."""
    assert {BUSY: 0, IDLE: 2} == worker_counts(arbiter(11, 12), {11: concurrency(), 12: concurrency()})


def test_a_worker_with_a_request_in_flight_is_busy_the_others_idle():
    reports: dict[int, Snapshot] = {11: {**concurrency(1.0), inst.ACTIVE_REQUESTS.meta: {GET: 1}}, 12: concurrency()}
    assert {BUSY: 1, IDLE: 1} == worker_counts(arbiter(11, 12), reports)


def test_no_worker_measuring_requests_means_no_busy_idle():
    """Workers that report, but neither concurrency nor requests in flight (their requests are not measured): the
    metric is absent, not 0 busy."""
    heartbeat_only: Snapshot = {inst.LOOP_UTILIZATION.meta: {(): 0.1}}
    assert worker_counts(arbiter(11, 12), {11: heartbeat_only, 12: heartbeat_only}) is None
    assert worker_counts(arbiter(11, 12), {}) is None


class _NoHooks(WorkerStateReader):
    requests_via_hooks = False


def reported_concurrency(state: WorkerStateReader, stats: RequestStats) -> list[float]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("tests")
    server_gauges.register(meter, state, stats)
    data = reader.get_metrics_data()
    return [
        point.value
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == inst.CONCURRENCY.name
        for point in metric.data.data_points
        if isinstance(point, NumberDataPoint)
    ]


def test_concurrency_is_reported_where_requests_are_measured():
    """From the first report: by a class that calls the request hooks, and by one whose application is wrapped."""
    assert [0.0] == reported_concurrency(WorkerStateReader(None), RequestStats())
    wrapped = RequestStats()
    wrapped.wrapped = True
    assert [0.0] == reported_concurrency(_NoHooks(None), wrapped)


def test_concurrency_is_absent_where_no_request_reaches_the_statistics():
    """A class without request hooks whose application was not wrapped measures no request: no made-up 0."""
    assert [] == reported_concurrency(_NoHooks(None), RequestStats())


def test_wrapping_the_application_marks_the_statistics_fed():
    """What the concurrency gauge asks for a class without request hooks: set when the wrapper is installed, not
    when the application cannot be wrapped."""
    for interface, fed in (("wsgi", True), (None, False)):
        stats = RequestStats()
        worker = SimpleNamespace(wsgi=lambda environ, start_response: [])
        app_boundary.install(worker, RequestObserver(stats, 0, RequestTracing(None)), interface)
        assert fed == stats.wrapped
