"""A Flask application with route templates and no OpenTelemetry code: ``/items/<int:item_id>``, ``/health``,
``/ready`` (the harness's readiness probe), and a blueprint under ``/v1`` with ``/items/<int:item_id>`` of its own;
``/manual/<x>`` names its route by hand through the environ key."""

from flask import Blueprint, Flask, request

app = Flask(__name__)
v1 = Blueprint("v1", __name__)


@app.route("/items/<int:item_id>")
def item(item_id: int) -> str:
    return f"{item_id}\n"


@v1.route("/items/<int:item_id>")
def v1_item(item_id: int) -> str:
    return f"v1 {item_id}\n"


@app.route("/health")
def health() -> str:
    return "ok\n"


@app.route("/ready")
def ready() -> str:
    return "ready\n"


@app.route("/manual/<x>")
def manual(x: str) -> str:
    request.environ["otel_gunicorn.route"] = "/by-hand"
    return "manual\n"


app.register_blueprint(v1, url_prefix="/v1")
