"""Test application: a slow endpoint for queue and concurrency tests (WSGI)."""

import time


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/slow"):
        time.sleep(float(environ.get("QUERY_STRING") or 3))
    status = "500 Internal Server Error" if path == "/fail" else "200 OK"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
