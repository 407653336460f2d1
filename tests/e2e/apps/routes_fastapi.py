"""A FastAPI application with no OpenTelemetry code of its own (FastAPI's native telemetry is on by default):
``/items/{item_id}``, ``/health``, ``/ready``."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/items/{item_id}")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/ready")
def ready() -> str:
    return "ready"
