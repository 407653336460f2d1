"""Dirty calls measured inside the dirty worker: in flight, duration by app and action, timeouts.

Runs in a dirty worker (gunicorn >= 25). gunicorn's ``DirtyWorker.execute(app_path, action, args, kwargs)`` is the one
coroutine every call goes through, on the worker's event loop: it runs the action in the worker's thread pool, waits
at most ``dirty_timeout`` and raises gunicorn's ``DirtyTimeoutError`` when it gives up. :meth:`CallMetrics.wrap` wraps
it, so what is measured is exactly the dirty worker's own time per call, one clock read at each end: no IPC, no wait
in the dirty arbiter's queue. (Measuring in the HTTP worker around ``get_dirty_client().execute`` would add both,
cost a clock read per call in every HTTP worker, and miss clients that are not HTTP workers.) A streaming action
returns a generator that gunicorn then drains chunk by chunk; the call ends when that generator ends or is closed.

Hazards: a call gunicorn stopped waiting for (timeout) leaves the in-flight count although its thread may run on
(Python cannot stop a thread). A streamed call ends on the thread that drains it (a pool thread for a sync generator);
the SDK instruments are thread-safe. The wrapper re-raises exactly what ``execute`` raised, and measures nothing twice.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE

from otel_gunicorn import _instruments as inst

Execute = Callable[[Any, Any, Any, Any], Awaitable[Any]]


@dataclasses.dataclass
class Call:
    """One call in flight."""

    attributes: dict[str, str]
    started: float
    ended: bool = False


class CallMetrics:
    """The dirty call instruments of one dirty worker.

    Args:
        meter: the dirty worker's meter.
        timeout_error: the exception ``execute`` raises when it stops waiting (gunicorn's ``DirtyTimeoutError``);
            None: timeouts cannot be told apart and are not counted.
    """

    def __init__(self, meter: Meter, timeout_error: type[BaseException] | None) -> None:
        self._active = meter.create_up_down_counter(
            inst.DIRTY_CALLS_ACTIVE.name,
            unit=inst.DIRTY_CALLS_ACTIVE.unit,
            description=inst.DIRTY_CALLS_ACTIVE.description,
        )
        self._duration = meter.create_histogram(
            inst.DIRTY_CALL_DURATION.name,
            unit=inst.DIRTY_CALL_DURATION.unit,
            description=inst.DIRTY_CALL_DURATION.description,
            explicit_bucket_boundaries_advisory=inst.DIRTY_DURATION_BUCKETS,
        )
        self._timeouts = meter.create_counter(
            inst.DIRTY_CALL_TIMEOUTS.name,
            unit=inst.DIRTY_CALL_TIMEOUTS.unit,
            description=inst.DIRTY_CALL_TIMEOUTS.description,
        )
        self._timeout_error = timeout_error

    def wrap(self, execute: Execute) -> Execute:
        """``execute`` (gunicorn's ``DirtyWorker.execute``, bound), measuring every call it makes."""

        async def measured_execute(app_path: Any, action: Any, args: Any, kwargs: Any) -> Any:
            call = self.begin(app_path, action)
            try:
                result = await execute(app_path, action, args, kwargs)
            except BaseException as exc:  # CancelledError too: the call ended either way
                self.end(call, exc)
                raise
            return self.follow(call, result)

        return measured_execute

    def begin(self, app_path: Any, action: Any) -> Call:
        """A call starts: it counts in flight."""
        call = Call({inst.DIRTY_APP_ATTRIBUTE: str(app_path), inst.DIRTY_ACTION_ATTRIBUTE: str(action)}, 0.0)
        self._active.add(1, call.attributes)
        call.started = time.perf_counter()
        return call

    def follow(self, call: Call, result: Any) -> Any:
        """``execute`` returned ``result``: the call ends now, or, for a stream, when the stream ends."""
        if inspect.isgenerator(result):
            return _streamed(result, lambda error: self.end(call, error))
        if inspect.isasyncgen(result):
            return _streamed_async(result, lambda error: self.end(call, error))
        self.end(call, None)
        return result

    def end(self, call: Call, error: BaseException | None) -> None:
        """The call ended (``error``: how it failed); a second end of the same call is ignored."""
        if call.ended:
            return
        call.ended = True
        elapsed = time.perf_counter() - call.started
        self._active.add(-1, call.attributes)
        if error is None:
            self._duration.record(elapsed, call.attributes)
            return
        kind = self.error_type(error)
        self._duration.record(elapsed, {**call.attributes, ERROR_TYPE: kind})
        if kind == "timeout":
            self._timeouts.add(1, call.attributes)

    def error_type(self, error: BaseException) -> str:
        """``timeout`` for gunicorn's timeout, else the exception's class (qualified unless a builtin)."""
        if self._timeout_error is not None and isinstance(error, self._timeout_error):
            return "timeout"
        cls = type(error)
        return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _streamed(gen: Generator[Any, Any, Any], end: Callable[[BaseException | None], None]) -> Generator[Any, Any, Any]:
    """``gen``, item for item, ending the call when it is exhausted, raises or is closed."""
    error = None
    try:
        yield from gen
    except GeneratorExit:  # closed by gunicorn before the end: the call ends, without an error of its own
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        end(error)


async def _streamed_async(
    gen: AsyncGenerator[Any, Any], end: Callable[[BaseException | None], None]
) -> AsyncGenerator[Any, Any]:
    """``gen``, item for item, ending the call when it is exhausted, raises or is closed."""
    error = None
    try:
        async for item in gen:
            yield item
    except GeneratorExit:
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            await gen.aclose()  # `async for` does not close what it stops iterating early
        finally:
            end(error)
