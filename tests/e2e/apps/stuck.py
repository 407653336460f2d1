"""Test application: requests that are slow or stuck in functions named for it (WSGI), for the stack lines."""

import time


def slow_in_here(seconds: float) -> None:
    time.sleep(seconds)


def stuck_in_here() -> None:
    time.sleep(30)


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        slow_in_here(float(environ.get("QUERY_STRING") or 3))
    elif path == "/stuck":
        stuck_in_here()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]
