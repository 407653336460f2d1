"""Test application: requests that are slow in a coroutine, or that block the event loop itself (ASGI)."""

import asyncio
import time

from lifespan import answer_lifespan


async def slow_in_here(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def blocking_the_loop_in_here(seconds: float) -> None:
    time.sleep(seconds)  # what an application must never do on the loop: every other request waits


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await answer_lifespan(receive, send)
        return
    seconds = float(scope.get("query_string", b"").decode() or 3)
    if scope["path"] == "/slow":
        await slow_in_here(seconds)
    elif scope["path"] == "/block":
        await blocking_the_loop_in_here(seconds)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"ok\n"})
