"""Dirty calls measured around gunicorn's DirtyWorker.execute (otel_gunicorn._worker.dirty.calls)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_gunicorn._worker.dirty.calls import CallMetrics

APP = {"gunicorn.dirty.app": "models:Model", "gunicorn.dirty.action": "predict"}


class Timeout(Exception):
    """Stands for gunicorn's DirtyTimeoutError."""


class AppFailed(Exception):
    pass


@pytest.fixture
def reader():
    return InMemoryMetricReader()


@pytest.fixture
def calls(reader):
    return CallMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"), Timeout)


def points(reader) -> dict[str, list]:
    """name -> data points of the latest collection."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def execute_returning(result=None, error: BaseException | None = None):
    """A stand-in for gunicorn's bound ``DirtyWorker.execute``."""

    async def execute(app_path, action, args, kwargs):
        await asyncio.sleep(0)
        if error is not None:
            raise error
        return result

    return execute


def call(calls, execute):
    return asyncio.run(calls.wrap(execute)("models:Model", "predict", [], {}))


def duration(reader):
    return points(reader)["gunicorn.dirty.call.duration"]


def active(reader) -> int:
    return sum(p.value for p in points(reader)["gunicorn.dirty.calls.active"])


def test_a_call_is_measured_by_app_and_action(calls, reader):
    """One call: one duration point with app and action, nothing left in flight, its result passed through."""
    assert 42 == call(calls, execute_returning(42))
    [point] = duration(reader)
    assert (1, APP, 0) == (point.count, dict(point.attributes), active(reader))


def test_buckets_reach_the_dirty_timeout_default(calls, reader):
    """Dirty work is slow: the buckets go up to 300 s, gunicorn's default dirty_timeout."""
    call(calls, execute_returning())
    assert 300.0 == duration(reader)[0].explicit_bounds[-1]


def test_a_failed_call_carries_the_exception_class(calls, reader):
    """The exception is re-raised and the duration carries error.type, the qualified class name."""
    with pytest.raises(AppFailed):
        call(calls, execute_returning(error=AppFailed("no")))
    [point] = duration(reader)
    assert f"{__name__}.AppFailed" == point.attributes["error.type"]
    assert 0 == active(reader)


def test_a_builtin_exception_is_named_without_its_module(calls, reader):
    """error.type of a ValueError is ValueError."""
    with pytest.raises(ValueError):
        call(calls, execute_returning(error=ValueError("unknown action")))
    assert "ValueError" == duration(reader)[0].attributes["error.type"]


def test_a_timeout_is_counted(calls, reader):
    """gunicorn's timeout error is error.type=timeout and one timeout by app and action."""
    with pytest.raises(Timeout):
        call(calls, execute_returning(error=Timeout()))
    [timeouts] = points(reader)["gunicorn.dirty.call.timeouts"]
    error_type = duration(reader)[0].attributes["error.type"]
    assert ("timeout", 1, APP) == (error_type, timeouts.value, dict(timeouts.attributes))


def test_without_a_timeout_class_nothing_is_a_timeout(reader):
    """Where gunicorn's timeout error cannot be imported, a timeout is just an error and no timeout is counted."""
    calls = CallMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"), None)
    with pytest.raises(Timeout):
        call(calls, execute_returning(error=Timeout()))
    assert "gunicorn.dirty.call.timeouts" not in points(reader)


def test_a_streamed_call_ends_with_its_last_chunk(calls, reader):
    """A generator result stays in flight while gunicorn drains it, and ends once exhausted."""
    stream = call(calls, execute_returning(iter_chunks()))
    assert 1 == active(reader)
    assert ["a", "b"] == list(stream)
    assert (0, 1) == (active(reader), duration(reader)[0].count)


def iter_chunks():
    yield "a"
    yield "b"


def test_a_stream_closed_early_ends_without_error(calls, reader):
    """gunicorn closes the generator (a client went away): the call ends, with no error.type."""
    stream = call(calls, execute_returning(iter_chunks()))
    next(stream)
    stream.close()
    assert (0, APP) == (active(reader), dict(duration(reader)[0].attributes))


def test_a_stream_that_raises_ends_with_its_error(calls, reader):
    """An exception from the generator ends the call with that error.type."""

    def failing():
        yield "a"
        raise AppFailed("mid-stream")

    stream = call(calls, execute_returning(failing()))
    with pytest.raises(AppFailed):
        list(stream)
    assert f"{__name__}.AppFailed" == duration(reader)[0].attributes["error.type"]


def test_an_async_stream_ends_with_its_last_chunk(calls, reader):
    """An async generator result ends the call when gunicorn's `async for` is done with it."""

    async def chunks():
        yield "a"
        yield "b"

    async def drain():
        stream = await calls.wrap(execute_returning(chunks()))("models:Model", "predict", [], {})
        in_flight = active(reader)
        return in_flight, [chunk async for chunk in stream]

    assert (1, ["a", "b"]) == asyncio.run(drain())
    assert (0, 1) == (active(reader), duration(reader)[0].count)


def test_an_async_stream_closed_early_closes_the_source(calls, reader):
    """aclose() after one chunk closes the app's async generator too, and ends the call."""
    closed = []

    async def chunks():
        try:
            yield "a"
            yield "b"
        finally:
            closed.append(True)

    async def take_one():
        stream = await calls.wrap(execute_returning(chunks()))("models:Model", "predict", [], {})
        first = await stream.__anext__()
        await stream.aclose()
        return first

    assert "a" == asyncio.run(take_one())
    assert ([True], 0) == (closed, active(reader))


def test_each_call_ends_once(calls, reader):
    """Ending a call twice records it once."""
    started = calls.begin("models:Model", "predict")
    calls.end(started, None)
    calls.end(started, None)
    assert (1, 0) == (duration(reader)[0].count, active(reader))
