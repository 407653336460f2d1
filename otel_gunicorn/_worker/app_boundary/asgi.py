"""ASGI middleware measuring each HTTP request for worker classes without request hooks (uvicorn-worker).

Runs in a worker, on its asyncio event loop, inside the task uvicorn runs each request in. A request starts when the
application is called with an ``http`` scope and ends when the final ``http.response.body`` (``more_body`` false)
has been handed to the server — or, if that never happens, when the application returns or raises. So a streamed
body is inside the measured time, and work the application does after its response (background tasks) is not.
``lifespan`` and ``websocket`` scopes pass through untouched.

What the hook path reads from gunicorn's request is read here from the scope: ``method``, ``http_version``
(``network.protocol.version``), ``scheme``, the ``traceparent`` / ``x-request-start`` / ``x-queue-start``
headers, and for the span ``raw_path`` (as gunicorn's ``req.path``; ``path`` when absent), ``query_string``,
``client`` and ``user-agent``. uvicorn applies trusted ``X-Forwarded-*`` headers to the scope before the
application (and this wrapper) sees it, as gunicorn does to ``req.scheme``.

An exception from the application before its response is complete records the request with status 500 (uvicorn
answers 500 if it can) and propagates unchanged.

Hazards: every telemetry step is guarded (a broken scope means the request is simply not measured, logged at most
once a minute); ``receive`` and ``send`` reach the application and the server exactly as without the wrapper. The
span's context is attached and detached in this middleware's own coroutine — never in ``send``, which an
application may call from another task — so the detach always happens in the context the attach did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL

from otel_gunicorn._worker.app_boundary.middleware import OBSERVED, BoundaryMiddleware
from otel_gunicorn._worker.queue_time import scan_asgi_headers
from otel_gunicorn._worker.requests import BYTE_HEADERS_GETTER, InFlight
from otel_gunicorn._worker.routes import ROUTE_KEY
from otel_gunicorn._worker.starlette_routes import starlette_route

__all__ = ["OBSERVED", "ASGIRequests"]


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


_GETTER = BYTE_HEADERS_GETTER


class ASGIScope:
    """An ASGI ``http`` scope, read for the request's span (:class:`~otel_gunicorn._worker.tracing.SpanSource`)."""

    getter: Getter[Any] = _GETTER

    @staticmethod
    def carrier(scope: Any) -> Any:
        headers = scope.get("headers")
        return headers if isinstance(headers, (list, tuple)) else None

    @staticmethod
    def attributes(scope: Any, method: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {HTTP_REQUEST_METHOD: method}
        raw_path = scope.get("raw_path")
        client = scope.get("client")
        headers = ASGIScope.carrier(scope)
        agent = _GETTER.get(headers, "user-agent") if headers is not None else None
        for attribute, value in (
            (URL_PATH, raw_path.decode("latin-1") if isinstance(raw_path, bytes) else scope.get("path")),
            (URL_QUERY, _text(scope.get("query_string"))),
            (URL_SCHEME, scope.get("scheme")),
            (CLIENT_ADDRESS, client[0] if isinstance(client, (list, tuple)) and client else None),
            (USER_AGENT_ORIGINAL, agent[0] if agent else None),
        ):
            if isinstance(value, str) and value:
                attributes[attribute] = value
        return attributes


def _text(value: object) -> object:
    return value.decode("latin-1") if isinstance(value, bytes) else value


SCOPE = ASGIScope()


class ASGIRequests(BoundaryMiddleware):
    """ASGI 3 middleware: each HTTP request is measured by ``observer`` until its response is complete."""

    interface = "ASGI"

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Send) -> None:
        exchange = self._begin(scope, send)
        if exchange is None:
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, exchange.send)
        except BaseException:
            exchange.fail()
            raise
        finally:
            exchange.close()

    def _begin(self, scope: Scope, send: Send) -> _Exchange | None:
        """An HTTP request starts; None for other scopes and for a request not to be measured (seen already, or
        its scope is unreadable)."""
        try:
            if scope["type"] != "http" or OBSERVED in scope:  # claim(), inlined
                return None
            scope[OBSERVED] = True
            has_traceparent, queue_start = scan_asgi_headers(scope.get("headers"))
            entry = self.observer.begin(scope.get("method"), has_traceparent, queue_start, scope, SCOPE)
            return _Exchange(self, entry, send, scope)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self.log_error("start", exc)
            return None


class _Exchange:
    """One HTTP request: its ``send`` stand-in sees the status and the end of the response."""

    __slots__ = ("_owner", "_entry", "_done", "_send", "_scope", "_status")

    def __init__(self, owner: ASGIRequests, entry: InFlight, send: Send, scope: Scope) -> None:
        self._owner = owner
        self._entry = entry
        self._done = False
        self._send = send
        self._scope = scope  # read at the end: the router has put the matched route there by then
        self._status: Any = None

    def send(self, message: Message) -> Awaitable[None]:
        """The application's ``send``: the server's own awaitable for every message but the last, which is awaited
        here so the request ends after the server took the last bytes (the whole body inside the time). Not a
        coroutine itself: the usual message costs no frame of ours."""
        if self._inspect(message):
            return self._send_last(message)
        return self._send(message)

    async def _send_last(self, message: Message) -> None:
        await self._send(message)
        self._finish()

    def _inspect(self, message: Message) -> bool:
        """Note the status; whether ``message`` ends the response."""
        try:
            kind = message["type"]
            if kind == "http.response.body":
                return not message.get("more_body", False)
            if kind == "http.response.start":
                status = message["status"]
                self._status = status if type(status) is int else int(status)  # an HTTPStatus becomes its code
            return False
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._owner.log_error("send", exc)
            return False

    def fail(self) -> None:
        """The application raised before its response was complete."""
        if not self._done:
            self._status = 500
            self._finish()

    def close(self) -> None:
        """The application returned or raised: record the request if its response never ended, restore the
        context (here, in the middleware's coroutine, where it was attached)."""
        self._finish()
        try:
            self._owner.observer.detach(self._entry)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._owner.log_error("detach", exc)

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        try:
            scope = self._scope
            route = scope.get(ROUTE_KEY)  # the manual key; the observer's RouteBound drops a non-str
            if route is None and ("route" in scope or "endpoint" in scope):  # a router's (routes.asgi_route's part)
                route = starlette_route(scope)
            self._owner.observer.end(
                self._entry, self._status, scope.get("http_version"), scope.get("scheme"), None, route
            )
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._owner.log_error("end", exc)
