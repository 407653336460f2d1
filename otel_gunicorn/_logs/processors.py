"""structlog processors adding trace and process context to every event, in the arbiter and in the workers.

They run for stdlib records (in ``ProcessorFormatter``'s ``foreign_pre_chain``) and for structlog-native events alike,
on the thread that emits the record: the handlers we configure are synchronous, so the current span and thread are
the caller's. Behind a ``QueueHandler`` that would no longer hold for the span (see ``docs/logging.md``).

A processor must never break the log call it decorates, so each one swallows its own failures and returns the event
unchanged; each adds a key only when it is missing, so an explicit value from the caller wins.
"""

from __future__ import annotations

from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

from otel_gunicorn import _handoff, _request_ids
from otel_gunicorn._gunicorn_log import add_pid_and_thread
from otel_gunicorn._instruments import SLOT_ATTRIBUTE

#: event key of the worker's ``gunicorn.worker.slot``, named like the metric attribute so logs and metrics join
SLOT_KEY = SLOT_ATTRIBUTE


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add the current span's ``trace_id``, ``span_id`` and ``trace_flags``, as the OpenTelemetry log spec names them.

    ``trace_id`` is 32 lowercase hex digits, ``span_id`` 16, ``trace_flags`` 2 (``01`` when sampled). They are added
    for any valid span context, sampled or not: an unsampled request still has a trace id worth correlating on.
    While a worker serves a request without a span (tracing off, no ``traceparent``), that request's own ids are
    added, with ``trace_flags`` ``00`` (:mod:`otel_gunicorn._request_ids`). Elsewhere nothing is added. Existing keys
    are kept.

    Args:
        logger: The wrapped logger (unused).
        method_name: The name of the log method called (unused).
        event_dict: The event dictionary to add the keys to.

    Returns:
        ``event_dict``, with the keys added when a valid span is current.
    """
    try:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
            event_dict.setdefault("span_id", format(context.span_id, "016x"))
            event_dict.setdefault("trace_flags", format(context.trace_flags, "02x"))
        elif (ids := _request_ids.current_ids()) is not None:  # a request served without a span
            event_dict.setdefault("trace_id", format(ids[0], "032x"))
            event_dict.setdefault("span_id", format(ids[1], "016x"))
            event_dict.setdefault("trace_flags", "00")  # not sampled: nothing was recorded under these ids
    except Exception:  # noqa: BLE001 - a log call must never fail because of its decoration
        pass
    return event_dict


def add_process_info(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Add ``pid``, ``thread_id`` and, in a worker, ``gunicorn.worker.slot``.

    For a stdlib record the pid and thread come from the record itself (``%(process)d`` and ``%(thread)d``), so they
    stay right even when the record is formatted elsewhere; otherwise from the calling thread. ``thread_id`` is
    :func:`threading.get_ident`, the value stdlib logging records. The slot is what the worker recorded after the fork;
    without one (in the arbiter) the key is omitted. Existing keys are kept.

    Args:
        logger: The wrapped logger (unused).
        method_name: The name of the log method called (unused).
        event_dict: The event dictionary to add the keys to.

    Returns:
        ``event_dict``, with the keys added.
    """
    event_dict = add_pid_and_thread(logger, method_name, event_dict)
    try:
        slot = _handoff.worker_slot()
        if slot is not None:
            event_dict.setdefault(SLOT_KEY, slot)
    except Exception:  # noqa: BLE001 - a log call must never fail because of its decoration
        pass
    return event_dict
