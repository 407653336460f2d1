"""Request spans and log export in a worker: a server span per request, from its start to its response's end.

Runs in a worker. The TracerProvider (and LoggerProvider) are built after the fork, in ``post_worker_init``, and set
as the global ones so the application's own instrumentation joins the same traces. Each request continues the
caller's W3C ``traceparent``/``tracestate`` and baggage (the globally configured propagators, ``OTEL_PROPAGATORS``).
The request's context is attached on the thread, greenlet or task that serves it, so everything logged while the
request runs — the application's lines and the access line — carries its trace ids. With tracing off
(``OTEL_TRACES_EXPORTER=none``) no span is created, but an incoming ``traceparent`` is still made current, so logs
still carry the caller's trace id, and its non-recording span is the request's (its exemplars carry the caller's
trace); a request with neither gets ids for its log lines only (:mod:`otel_gunicorn._request_ids`).

The span is the same whichever way the request is seen: gunicorn's request object in ``pre_request`` (here), or a
WSGI environ / ASGI scope where the application is wrapped instead (:mod:`otel_gunicorn._worker.app_boundary`). Each
of those is read through a :class:`SpanSource`, so every path yields the same name, attributes and parent.

If the application is also wrapped by opentelemetry-instrumentation-wsgi, that middleware sees our span as the
active server span and records an internal child span instead of a second server span. FastAPI's native telemetry
(0.165+) does not look at the current span: for such an application the server span is FastAPI's
(:func:`app_makes_server_spans`).
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_gunicorn import _otlp, _request_ids
from otel_gunicorn._config import Config
from otel_gunicorn._version import __version__

#: ``exception.type`` of the ``exception`` event a request's span gets when a ``--timeout`` abort cuts it off: no
#: exception of the application's ended it, the worker was stopped from outside while it ran
TIMEOUT_EXCEPTION = "TimeoutError"


class _HeaderListGetter(Getter[list]):  # type: ignore[type-arg]
    """Reads gunicorn's ``[(NAME, value), ...]`` request headers (names upper-cased) for the propagators."""

    def get(self, carrier: list, key: str) -> list[str] | None:  # type: ignore[type-arg]
        wanted = key.upper()
        values = [str(v) for k, v in carrier if str(k).upper() == wanted]
        return values or None

    def keys(self, carrier: list) -> list[str]:  # type: ignore[type-arg]
        return [str(k).lower() for k, _v in carrier]


_GETTER = _HeaderListGetter()


class SpanSource(Protocol):
    """How one kind of request object is read for its span: gunicorn's request, a WSGI environ, an ASGI scope."""

    getter: Getter[Any]
    """Reads the :meth:`carrier` for the propagators (``traceparent``, ``tracestate``, ``baggage``)."""

    def carrier(self, request: Any) -> Any:
        """What the propagators read the caller's context from, or None when the request has nothing readable."""

    def attributes(self, request: Any, method: str) -> dict[str, Any]:
        """The span's start attributes: ``http.request.method`` (already folded), and the URL, client and user
        agent where the request tells them."""


class GunicornRequest:
    """gunicorn's request object, as ``pre_request`` gets it."""

    getter: Getter[Any] = _GETTER

    @staticmethod
    def carrier(request: Any) -> Any:
        headers = getattr(request, "headers", None)
        return headers if isinstance(headers, list) else None

    @classmethod
    def attributes(cls, request: Any, method: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {HTTP_REQUEST_METHOD: method}
        for attribute, name in ((URL_PATH, "path"), (URL_QUERY, "query"), (URL_SCHEME, "scheme")):
            value = getattr(request, name, None)
            if isinstance(value, str) and value:
                attributes[attribute] = value
        peer = getattr(request, "peer_addr", None)
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            attributes[CLIENT_ADDRESS] = peer[0]
        headers = cls.carrier(request)
        if headers is not None:
            agent = cls.getter.get(headers, "user-agent")
            if agent:
                attributes[USER_AGENT_ORIGINAL] = agent[0]
        return attributes


GUNICORN_REQUEST = GunicornRequest()


def build_tracer_provider(config: Config, resource: Resource) -> TracerProvider | None:
    """The worker's TracerProvider for ``OTEL_TRACES_EXPORTER`` (None when tracing is off), set as the global one."""
    if config.traces_exporter == "none":
        return None
    inherited = trace.get_tracer_provider()
    if isinstance(inherited, TracerProvider):
        # Set in the arbiter before the fork (opentelemetry-instrument's configurator; the SDK re-creates its batch
        # processors' threads in the child): the server spans go through it, with its exporters and resource, so a
        # request is one trace from one provider, and no worker logs "Overriding of current TracerProvider".
        return inherited
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_span_exporter(config)))
    trace.set_tracer_provider(provider)
    return provider


def app_makes_server_spans(app: Any) -> bool:
    """Whether ``app`` makes a SERVER span of its own for each request, whatever span is current: a FastAPI
    application (0.165+) with its native telemetry's tracing on, the default (``FastAPI(telemetry={"tracing":
    False})`` turns it off). Its span takes its parent from the request's headers, never from the current context,
    so beside ours each request would be two traces with a SERVER span each; otel_gunicorn then leaves the span to
    it (it carries ``http.route``; its operation spans are its children), and measures the request as before.

    Reads FastAPI's ``_telemetry`` (the ``TelemetryConfig`` its constructor keeps, fastapi/applications.py)
    defensively: anything unexpected means no."""
    fastapi = sys.modules.get("fastapi")
    if fastapi is None or not isinstance(app, getattr(fastapi, "FastAPI", ())):
        return False
    config = getattr(app, "_telemetry", None)
    return isinstance(config, dict) and config.get("tracing") is True


def _span_exporter(config: Config) -> SpanExporter:
    """``console``: one span per line on stdout; ``otlp``: the SDK's exporter, its outages logged once."""
    if config.traces_exporter == "console":
        return ConsoleSpanExporter(formatter=one_line_span)
    return _otlp.span_exporter(config.otlp_protocol("traces"), config.otlp_endpoint("traces"))


def one_line_span(span: ReadableSpan) -> str:
    """A span as one compact JSON object and a newline: the SDK's default indents it over dozens of lines, which
    would break a JSON log stream (``OTEL_GUNICORN_LOG_FORMAT=json``) into fragments between the access lines."""
    return f"{span.to_json(indent=None)}\n"


class RequestTracing:
    """Starts and ends the server span of each request and keeps its context current while it runs."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self._tracer = provider.get_tracer("otel_gunicorn", __version__) if provider is not None else None
        #: whether requests get spans; without, only a request bringing a ``traceparent`` needs :meth:`start` (the
        #: others get :func:`otel_gunicorn._request_ids.begin`, which the request path calls itself)
        self.enabled = self._tracer is not None

    def start(
        self, request: Any, source: SpanSource, method: str, has_traceparent: bool
    ) -> tuple[trace.Span | None, object]:
        """Continue the caller's trace; return the span and the context token (None when there was nothing to make
        current). The context is attached last: nothing here can fail after it.

        With tracing off, the span is the caller's, as the OpenTelemetry API continues it without an SDK: a
        non-recording span with the caller's ids (None when the request brought no valid ``traceparent``). It
        records nothing, but the request's exemplars (trace-based filter) and its stack line carry the caller's
        trace, as its log lines do.
        """
        if self._tracer is None and not has_traceparent:
            # tracing off and no caller's trace: no span, but the request's log lines still share a trace id
            return None, _request_ids.begin()
        carrier = source.carrier(request)
        parent = propagate.extract(carrier, getter=source.getter) if carrier is not None else context.get_current()
        if self._tracer is None:
            callers = trace.get_current_span(parent)
            return (callers if callers.get_span_context().is_valid else None), context.attach(parent)
        span = self._tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=source.attributes(request, method)
        )
        return span, context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def end(
        span: trace.Span | None,
        status: int | None,
        error: str | None = None,
        route: str | None = None,
        method: str | None = None,
    ) -> None:
        """End the span with the response status, its route (``http.route``; the name becomes ``METHOD route``) and,
        for a failed request (a 5xx, an exception, a ``--timeout`` abort), its ``error.type`` and an error status."""
        if span is not None:
            if route is not None:
                span.set_attribute(HTTP_ROUTE, route)
                span.update_name(f"{method} {route}" if method is not None else route)
            if status is not None:
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
            if error is not None:
                span.set_attribute(ERROR_TYPE, error)
                span.set_status(Status(StatusCode.ERROR))
            span.end()

    @staticmethod
    def timed_out(span: trace.Span | None, message: str, stacktrace: str) -> None:
        """A ``--timeout`` abort cuts the request of ``span`` off: an ``exception`` event with the stack it was
        running, by the semantic conventions for exceptions; the span ends later, with an error status, where the
        request ends (``post_request``, or the worker's exit for requests that never reach it)."""
        if span is not None and span.is_recording():
            span.add_event(
                "exception",
                {
                    EXCEPTION_TYPE: TIMEOUT_EXCEPTION,
                    EXCEPTION_MESSAGE: message,
                    EXCEPTION_STACKTRACE: stacktrace,
                },
            )

    @staticmethod
    def detach(token: object) -> None:
        """Restore the context that was current before :meth:`start` (called where ``start`` was: same thread,
        greenlet or task)."""
        if token is not None and not _request_ids.end(token):
            context.detach(token)  # type: ignore[arg-type]
