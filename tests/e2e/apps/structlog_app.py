"""Test application: logs with structlog, configured by ``otel_gunicorn.logs.configure_structlog``, as a
structlog-native application would; one event per request with values of several types, one the log data model has
no type for."""

import structlog

from otel_gunicorn.logs import configure_structlog

configure_structlog()
log = structlog.get_logger("app")


class Customer:
    def __str__(self):
        return "customer 7"


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/ready":  # the harness's readiness probe is not application traffic
        log.info("paid", order=42, price=9.5, express=True, tags=["a", "b"], customer=Customer())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
