"""Trace ids for the log lines of a request that has no span: tracing off and no ``traceparent`` from the caller.

Logs are correlated by ``trace_id``. A request with a span (tracing on, or a caller's ``traceparent`` continued)
has one; a request without would leave its log lines — the application's and the access line — with nothing in
common. So the worker marks every such request in a context variable (:func:`begin`, :func:`end`), and the log
processor asks :func:`current_ids` for ids: made on the first line the request logs, random as W3C trace ids are,
and shared by every later line of the same request. They are never exported and never propagated downstream (no
span exists); ``trace_flags`` ``00`` says so, as for an unsampled trace.

Cheap on purpose: this runs on every request with tracing off. Marking a request costs one small list and a
context-variable set and reset (about a tenth of otel_gunicorn's request path, measured; the request path spells
them out itself: :data:`SET`, :data:`RESET`); the ids cost nothing until a line is logged.
"""

from __future__ import annotations

import contextvars
import random

# A request without a span: a one-element list holding its (trace_id, span_id) once a line asks for them.
_request: contextvars.ContextVar[list[tuple[int, int] | None] | None] = contextvars.ContextVar(
    "otel_gunicorn_request_ids", default=None
)
_set = _request.set
_reset = _request.reset
_Token = contextvars.Token

#: :func:`begin` and :func:`end` as the request path spells them, without a call of ours around each:
#: ``token = SET([None])`` marks a request, ``token.var is VAR`` tells its token apart from OpenTelemetry's, and
#: ``RESET(token)`` ends it (``ValueError`` in another context than the one it began in: call :func:`end` then)
VAR = _request
SET = _set
RESET = _reset


def begin() -> contextvars.Token[list[tuple[int, int] | None] | None]:
    """A request without a span starts on this thread, greenlet or task; pass the token to :func:`end`."""
    return _set([None])


def end(token: object) -> bool:
    """The request is over (same thread, greenlet or task as :func:`begin`). Returns whether ``token`` came from
    :func:`begin`: any other token (``opentelemetry.context.attach``'s) is left alone, for its owner to detach."""
    if token.__class__ is not _Token or token.var is not _request:
        return False
    try:
        _reset(token)
    except ValueError:  # ended in another context than it began (a server's oddity): just forget it here
        _set(None)
    return True


def is_token(token: object) -> bool:
    """Whether ``token`` came from :func:`begin` (and not from ``opentelemetry.context.attach``)."""
    return token.__class__ is _Token and token.var is _request


def current_ids() -> tuple[int, int] | None:
    """``(trace_id, span_id)`` of the spanless request being served here, made on first use; None outside one."""
    holder = _request.get()
    if holder is None:
        return None
    return ids_of(holder)


def ids_of(holder: list[tuple[int, int] | None]) -> tuple[int, int]:
    """``(trace_id, span_id)`` of the spanless request marked with ``holder`` (what ``SET`` was given), made on first
    use. Also read from another thread (a slow request's log line): should the request log its first line at that
    very moment, one of the two lines may get other ids — the ids are for correlation, nothing depends on them."""
    ids = holder[0]
    if ids is None:
        # random.getrandbits, as the SDK's RandomIdGenerator; 0 is not a valid id
        ids = holder[0] = (random.getrandbits(128) or 1, random.getrandbits(64) or 1)
    return ids
