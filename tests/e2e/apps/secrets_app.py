"""Test application whose failing frames hold secrets, as a real one's do: an API key and an ``Authorization`` value
read from the environment (``APP_API_KEY``, ``APP_TOKEN``), never written in a source line a traceback could quote.

``/caught``: the application logs the exception itself (``logging.exception``); ``/raise``: the exception leaves the
application and gunicorn logs it (``Error handling request``).
"""

import logging
import os

log = logging.getLogger("app")


def _call_upstream(api_key, auth):
    raise RuntimeError("upstream refused the credentials")


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/ready":  # the test harness's readiness probe is not application traffic
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    api_key = os.environ["APP_API_KEY"]
    auth = "Bearer " + os.environ["APP_TOKEN"]
    if environ.get("PATH_INFO") == "/caught":
        try:
            _call_upstream(api_key, auth)
        except RuntimeError:
            log.exception("upstream call failed")
        start_response("502 Bad Gateway", [("Content-Length", "0")])
        return [b""]
    _call_upstream(api_key, auth)
    return []
