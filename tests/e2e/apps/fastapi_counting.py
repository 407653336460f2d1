"""A FastAPI application, not instrumented in code: FastAPI's native telemetry (0.165+, on by default) records its
own ``http.server.request.duration`` (scope ``fastapi``, with ``http.route``) and its own request spans through the
global providers. ``/items/{item_id}`` counts ``app.hits`` and logs one line; ``/ready`` is the harness's probe."""

import logging

from fastapi import FastAPI
from opentelemetry import metrics

app = FastAPI()
hits = metrics.get_meter("fastapi_counting").create_counter("app.hits", unit="{hit}")
log = logging.getLogger("fastapi_counting")


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    hits.add(1)
    log.warning("hello from the app")
    return {"item": item_id}


@app.get("/ready")
async def ready() -> dict[str, bool]:
    return {"ready": True}
