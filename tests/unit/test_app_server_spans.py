"""Which applications make their own SERVER span per request (FastAPI's native telemetry, 0.165+), so that
otel_gunicorn leaves the request's span to them instead of making a second, unrelated one."""

from __future__ import annotations

import pytest

from otel_gunicorn._worker.tracing import app_makes_server_spans

fastapi = pytest.importorskip("fastapi")


def test_a_fastapi_app_traces_its_requests_by_default() -> None:
    assert app_makes_server_spans(fastapi.FastAPI())


def test_a_fastapi_app_with_tracing_off_does_not() -> None:
    """``FastAPI(telemetry={"tracing": False})``: otel_gunicorn's span is the request's server span again."""
    assert not app_makes_server_spans(fastapi.FastAPI(telemetry={"tracing": False}))


def test_other_applications_do_not() -> None:
    """A plain ASGI callable, a Starlette app, nothing at all."""
    from starlette.applications import Starlette

    async def app(scope: object, receive: object, send: object) -> None: ...

    assert [False, False, False] == [app_makes_server_spans(a) for a in (app, Starlette(), None)]
