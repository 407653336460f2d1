"""A FastAPI application with no OpenTelemetry code of its own (FastAPI's native telemetry is on by default):
``/items/{item_id}``, ``/health``, ``/ready``; a router included under ``/api`` (``/api/things/{thing_id}``); and a
FastAPI application mounted at ``/v1`` with ``/items/{item_id}`` of its own (``/v1/items/{item_id}``)."""

from fastapi import APIRouter, FastAPI

app = FastAPI()
things = APIRouter()
v1 = FastAPI()


@app.get("/items/{item_id}")
def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/ready")
def ready() -> str:
    return "ready"


@things.get("/things/{thing_id}")
def thing(thing_id: int) -> dict[str, int]:
    return {"thing": thing_id}


@v1.get("/items/{item_id}")
def v1_item(item_id: int) -> dict[str, int]:
    return {"v1": item_id}


app.include_router(things, prefix="/api")
app.mount("/v1", v1)
