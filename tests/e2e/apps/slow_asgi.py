"""Test application: a slow endpoint for the asgi worker."""

import asyncio

from lifespan import answer_lifespan


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    path = scope.get("path", "/")
    if path.startswith("/slow"):
        await asyncio.sleep(float(scope.get("query_string", b"").decode() or 3))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
