"""otel_gunicorn's request metrics, aggregated outside the SDK, and the hook adapter feeding them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from otel_gunicorn import _instruments as inst
from otel_gunicorn import _request_ids
from otel_gunicorn._worker.request_stats import RequestStats
from otel_gunicorn._worker.requests import RequestObserver
from otel_gunicorn._worker.tracing import RequestTracing
from tests.unit.fake_requests import Req, Resp

BOUNDS = (0.1, 0.5, 1.0)


@pytest.fixture(autouse=True)
def _no_request_left_marked() -> Iterator[None]:
    """A test that starts a request and never finishes it leaves the request's log-ids mark in the test thread's
    context, where later tests (test_logs) would find it: put back what was there."""
    token = _request_ids.VAR.set(None)
    yield
    _request_ids.VAR.reset(token)


def test_active_requests_go_up_and_down():
    """started/finished leave the in-flight count of that key at zero, the point kept."""
    stats = RequestStats(BOUNDS)
    key = (("http.request.method", "GET"),)
    stats.started(key)
    stats.started(key)
    assert {key: 2} == stats.snapshot()[inst.ACTIVE_REQUESTS.meta]
    stats.finished(key, key, 0.2)
    stats.finished(key, key, 0.2)
    assert {key: 0} == stats.snapshot()[inst.ACTIVE_REQUESTS.meta]


def test_durations_fill_buckets_with_le_semantics():
    """A duration equal to a boundary counts in the bucket that boundary closes, as Prometheus' le does."""
    stats = RequestStats(BOUNDS)
    key = ()
    stats.started(key)
    stats.finished(key, key, 0.5)
    stats.started(key)
    stats.finished(key, key, 3.0)
    [point] = stats.snapshot()[inst.REQUEST_DURATION.meta].values()
    assert ((0, 1, 0, 1), 2, 3.5, 0.5, 3.0) == (point.counts, point.count, point.sum, point.min, point.max)


def test_nothing_recorded_means_no_metric():
    """A worker that served nothing reports no request metrics at all (absent, not zero)."""
    assert {} == RequestStats(BOUNDS).snapshot()


def test_queue_time_and_invalid_headers():
    """Queue times go to their histogram; invalid headers are only counted."""
    stats = RequestStats(BOUNDS)
    stats.queued(0.25)
    stats.invalid_header()
    snapshot = stats.snapshot()
    assert 1 == snapshot[inst.QUEUE_DURATION.meta][()].count
    assert {(): 1} == snapshot[inst.QUEUE_HEADER_INVALID.meta]


def test_observer_records_semantic_convention_attributes():
    """A GET answered 200 over HTTP/1.1 is recorded with method, status, protocol version and scheme, by slot."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 3, RequestTracing(None))
    req = Req()
    observer.started(req)
    assert {(("gunicorn.worker.slot", 3), ("http.request.method", "GET")): 1} == stats.snapshot()[
        inst.ACTIVE_REQUESTS.meta
    ]
    observer.finished(req, {}, Resp())
    expected_key = (
        ("http.request.method", "GET"),
        ("http.response.status_code", 200),
        ("network.protocol.version", "1.1"),
        ("url.scheme", "http"),
    )
    assert [expected_key] == list(stats.snapshot()[inst.REQUEST_DURATION.meta])


def test_unknown_methods_are_folded_into_other():
    """A method semantic conventions do not name is recorded as _OTHER, keeping cardinality bounded."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, None, RequestTracing(None))
    req = Req()
    req.method = "BREW"
    observer.started(req)
    assert [(("http.request.method", "_OTHER"),)] == list(stats.snapshot()[inst.ACTIVE_REQUESTS.meta])


class Unreadable:
    """A request object whose every attribute read fails, as a half-torn-down one might."""

    def __getattr__(self, name: str) -> None:
        raise RuntimeError(f"cannot read {name}")


def test_a_request_without_attributes_is_counted_as_other():
    """An object with none of a request's attributes is still counted, as method _OTHER, from start to finish."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, None, RequestTracing(None))
    req = object()
    observer.started(req)
    observer.finished(req, {}, None)
    snapshot = stats.snapshot()
    other = (("http.request.method", "_OTHER"),)
    assert ({other: 0}, [other]) == (snapshot[inst.ACTIVE_REQUESTS.meta], list(snapshot[inst.REQUEST_DURATION.meta]))


def test_an_unreadable_request_is_logged_and_not_counted(logged):
    """A request whose attributes raise does not raise into the request: one warning, and nothing left in flight."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None))
    req = Unreadable()
    observer.started(req)
    observer.finished(req, {}, Resp())
    expected = [(logging.WARNING, "otel_gunicorn: pre_request telemetry failed: RuntimeError('cannot read method')")]
    assert (expected, {}) == (logged.messages, stats.snapshot())


def test_finishing_a_request_never_started_records_nothing(logged):
    """post_request for a request pre_request never saw (or could not read) records and logs nothing."""
    stats = RequestStats(BOUNDS)
    RequestObserver(stats, 0, RequestTracing(None)).finished(Req(), {}, Resp())
    assert ([], {}) == (logged.messages, stats.snapshot())


def _duration_keys(stats: RequestStats) -> list[dict[str, object]]:
    return [dict(key) for key in stats.snapshot()[inst.REQUEST_DURATION.meta]]


class SentResp:
    """A response whose status line already reached the client."""

    status_code = 200
    headers_sent = True


def test_an_exception_cutting_a_request_off_becomes_its_error_type():
    """post_request runs in gunicorn's ``finally``: the exception in flight types the error, and the status is the
    500 of gunicorn's error page when the response had not started."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None))
    req = Req()
    observer.started(req)
    try:
        raise KeyError("app bug")
    except KeyError:
        observer.finished(req, {}, Resp())
    [key] = _duration_keys(stats)
    assert "KeyError" == key["error.type"] and 500 == key["http.response.status_code"]


def test_a_timeout_abort_keeps_the_status_the_client_already_got():
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None))
    req = Req()
    observer.started(req)
    observer.abort()
    try:
        raise SystemExit(1)
    except SystemExit:
        observer.finished(req, {}, SentResp())
    [key] = _duration_keys(stats)
    assert "timeout" == key["error.type"] and 200 == key["http.response.status_code"]


def test_requests_an_abort_leaves_in_flight_are_recorded_as_timeouts():
    """An aborted gthread worker's other threads never reach post_request: the exit records them."""
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None))
    observer.started(Req())
    assert 0 == observer.abandon_in_flight(), "a graceful exit waits for its requests"
    observer.abort()
    assert 1 == observer.abandon_in_flight()
    [key] = _duration_keys(stats)
    assert {"error.type": "timeout", "http.request.method": "GET"} == key
    assert 0 == sum(stats.snapshot()[inst.ACTIVE_REQUESTS.meta].values())


def test_a_request_that_completed_has_no_error_type_and_a_5xx_has_its_status():
    stats = RequestStats(BOUNDS)
    observer = RequestObserver(stats, 0, RequestTracing(None))
    for status in (200, 503):
        req = Req()
        observer.started(req)
        resp = Resp()
        resp.status_code = status
        observer.finished(req, {}, resp)
    errors = {key["http.response.status_code"]: key.get("error.type") for key in _duration_keys(stats)}
    assert {200: None, 503: "503"} == errors
