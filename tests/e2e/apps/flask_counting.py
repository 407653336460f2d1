"""A Flask application that is not instrumented in code (opentelemetry-instrument does it): its own counter and one
log line per request on ``/``; ``/ready`` is the harness's readiness probe."""

import logging

from flask import Flask
from opentelemetry import metrics

app = Flask(__name__)
hits = metrics.get_meter("flask_counting").create_counter("app.hits", unit="{hit}")
log = logging.getLogger("flask_counting")


@app.route("/")
def index() -> str:
    hits.add(1)
    log.warning("hello from the app")
    return "ok\n"


@app.route("/ready")
def ready() -> str:
    return "ready\n"
