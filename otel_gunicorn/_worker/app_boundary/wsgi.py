"""WSGI middleware measuring each request for worker classes without request hooks (gevent_pywsgi, tornado).

Runs in a worker, on the request path: under gevent_pywsgi in the greenlet serving the connection, under tornado on
the IOLoop thread (inside the task of tornado's ``WSGIContainer``). A request starts when the application is
called and ends when the server closes the iterable the application returned — both servers call ``close()`` once
the body has been consumed (pywsgi after writing it; tornado's ``WSGIContainer`` after collecting it, just before it
writes the response) — so a streamed body is inside the measured time, as on the hook path.

What the hook path reads from gunicorn's request is read here from the environ: ``REQUEST_METHOD``,
``SERVER_PROTOCOL`` (``network.protocol.version``), ``wsgi.url_scheme``, the ``HTTP_TRACEPARENT`` /
``HTTP_X_REQUEST_START`` / ``HTTP_X_QUEUE_START`` keys, and for the span the path (``RAW_URI`` without its query,
as gunicorn's ``req.path``; tornado's environ has only the decoded ``SCRIPT_NAME`` + ``PATH_INFO``),
``QUERY_STRING``, ``REMOTE_ADDR`` and ``HTTP_USER_AGENT``.

An exception from the application — when called, while its body is iterated, or from its ``close()`` — records the
request with status 500 (a server answers 500 when it can; a body broken after its headers went out is an error
too) and propagates unchanged.

Hazards: every telemetry step is guarded (a broken environ means the request is simply not measured, logged at most
once a minute); the application's ``start_response``, iterable and ``close()`` are called exactly as without the
wrapper. The span's context is attached when the application is called and detached in ``close()``, on the same
greenlet or task. Under gevent_pywsgi, gevent's access line is written after ``close()``, outside the span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from opentelemetry.propagators.textmap import Getter
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_QUERY, URL_SCHEME
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL

from otel_gunicorn._worker.app_boundary.middleware import OBSERVED, BoundaryMiddleware
from otel_gunicorn._worker.requests import InFlight
from otel_gunicorn._worker.routes import ROUTE_KEY

__all__ = ["OBSERVED", "WSGIRequests"]


_SERVER_ERROR = "500 Internal Server Error"
#: status line → code; bounded like the attribute-key caches (an application could make up status lines)
_STATUS_CODES: dict[str, int | None] = {}
_MAX_STATUS_CODES = 256


class _EnvironGetter(Getter[dict]):  # type: ignore[type-arg]
    """Reads request headers from a WSGI environ (``traceparent`` is ``HTTP_TRACEPARENT``) for the propagators."""

    def get(self, carrier: dict, key: str) -> list[str] | None:  # type: ignore[type-arg]
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: dict) -> list[str]:  # type: ignore[type-arg]
        return [k[5:].lower().replace("_", "-") for k in carrier if isinstance(k, str) and k.startswith("HTTP_")]


class WSGIEnviron:
    """A WSGI environ, read for the request's span (:class:`~otel_gunicorn._worker.tracing.SpanSource`)."""

    getter: Getter[Any] = _EnvironGetter()

    @staticmethod
    def carrier(environ: Any) -> Any:
        return environ

    @staticmethod
    def attributes(environ: Any, method: str) -> dict[str, Any]:
        attributes: dict[str, Any] = {HTTP_REQUEST_METHOD: method}
        raw_uri = environ.get("RAW_URI")
        path = (
            raw_uri.partition("?")[0]
            if isinstance(raw_uri, str)
            else f"{environ.get('SCRIPT_NAME') or ''}{environ.get('PATH_INFO') or ''}"
        )
        for attribute, value in (
            (URL_PATH, path),
            (URL_QUERY, environ.get("QUERY_STRING")),
            (URL_SCHEME, environ.get("wsgi.url_scheme")),
            (CLIENT_ADDRESS, environ.get("REMOTE_ADDR")),
            (USER_AGENT_ORIGINAL, environ.get("HTTP_USER_AGENT")),
        ):
            if isinstance(value, str) and value:
                attributes[attribute] = value
        return attributes


ENVIRON = WSGIEnviron()


class WSGIRequests(BoundaryMiddleware):
    """WSGI middleware: each request is measured by ``observer`` from the call to the ``close()`` of its body."""

    interface = "WSGI"

    def __call__(self, environ: Any, start_response: Callable[..., Any]) -> Any:
        exchange = self._begin(environ, start_response)
        if exchange is None:
            return self.app(environ, start_response)
        try:
            result = self.app(environ, exchange.start_response)
        except BaseException:
            exchange.fail()
            raise
        return exchange.wrap(result)

    def _begin(self, environ: Any, start_response: Callable[..., Any]) -> _Exchange | None:
        """A request starts; None when it is not to be measured (seen already, or its environ is unreadable)."""
        try:
            if OBSERVED in environ:  # claim(), inlined: a wrapper further out measures this request
                return None
            environ[OBSERVED] = True
            queue_start = environ.get("HTTP_X_REQUEST_START") or environ.get("HTTP_X_QUEUE_START")
            entry = self.observer.begin(
                environ.get("REQUEST_METHOD"), "HTTP_TRACEPARENT" in environ, queue_start, environ, ENVIRON
            )
            version, scheme = environ.get("SERVER_PROTOCOL"), environ.get("wsgi.url_scheme")
            return _Exchange(self, entry, start_response, version, scheme, environ)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self.log_error("start", exc)
            return None


class _Exchange:
    """One request: stands in for the server's ``start_response`` (to see the status) and for the application's
    iterable (to see the end): one slotted object per request plays both parts."""

    __slots__ = ("_owner", "_entry", "_start_response", "_version", "_scheme", "_status", "_result", "_environ")

    def __init__(
        self,
        owner: WSGIRequests,
        entry: InFlight,
        start_response: Callable[..., Any],
        version: Any,
        scheme: Any,
        environ: Any,
    ) -> None:
        self._owner = owner
        self._environ = environ
        self._entry: InFlight | None = entry
        self._start_response = start_response
        self._version = version
        self._scheme = scheme
        self._status: Any = None
        self._result: Any = ()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self._status = status  # the last call wins: an error page may replace the status before anything was sent
        if exc_info is None:
            return self._start_response(status, headers)
        return self._start_response(status, headers, exc_info)

    def wrap(self, result: Iterable[bytes]) -> Any:
        """Stand in for ``result``. A server may treat a sized result specially (pywsgi derives Content-Length
        from ``len()``), so a sized one gets a sized stand-in."""
        try:
            self._result = result
            if hasattr(result, "__len__"):
                self.__class__ = _SizedExchange  # same slots; avoids a second object per request
            return self
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._owner.log_error("body", exc)
            self._finish()
            return result

    def __iter__(self) -> Iterator[bytes]:
        result = self._result
        if type(result) is list or type(result) is tuple:
            return iter(result)  # iterating them cannot raise: no need to watch for the application's errors
        return self._chunks(result)

    def _chunks(self, result: Iterable[bytes]) -> Iterator[bytes]:
        try:
            # not `yield from`: that would also close the application's iterator when the server drops this one,
            # and the application's close() is called once, by close() below
            for chunk in result:  # noqa: UP028
                yield chunk
        except GeneratorExit:  # the server stopped iterating: not the application's error
            raise
        except BaseException:
            self._status = _SERVER_ERROR
            raise

    def close(self) -> None:
        """The server is done with the body: close the application's iterable, then record the request."""
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        except BaseException:
            self._status = _SERVER_ERROR
            raise
        finally:
            self._finish()

    def fail(self) -> None:
        """The application raised instead of returning: the server answers 500."""
        self._status = _SERVER_ERROR
        self._finish()

    def _finish(self) -> None:
        entry, self._entry = self._entry, None
        if entry is None:
            return  # finished already: a second close() records nothing
        try:
            status = self._status
            code = _STATUS_CODES.get(status) if status.__class__ is str else None  # _status_code(), cached part
            if code is None:
                code = _status_code(status)
            # routes.wsgi_route's lookup, without its function layer; the observer's RouteBound drops a non-str
            route = self._environ.get(ROUTE_KEY)
            self._owner.observer.end_and_detach(entry, code, self._version, self._scheme, None, route)
        except Exception as exc:  # noqa: BLE001 - never break a request for telemetry
            self._owner.log_error("end", exc)


class _SizedExchange(_Exchange):
    """:class:`_Exchange` for a result with a length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)


def _status_code(status: Any) -> int | None:
    """The code of a WSGI status line (``"200 OK"`` → 200), or None."""
    if not isinstance(status, str):
        return None
    try:
        return _STATUS_CODES[status]
    except KeyError:
        head = status[:3]
        code = int(head) if head.isdigit() else None
        if len(_STATUS_CODES) < _MAX_STATUS_CODES:
            _STATUS_CODES[status] = code
        return code
