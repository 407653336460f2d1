"""Test application for worker health: memory it keeps, CPU it burns, the GIL it holds, garbage it makes.

Every answer is the serving worker's pid, so a test knows which process to compare the endpoint with.

``/grow?MB`` keeps MB mebibytes (written, so resident) for the life of the worker; ``/burn?S`` uses S seconds of
the worker's CPU; ``/hold?S`` holds the GIL for S seconds: ``sys.setswitchinterval`` raised to 30 s, then a
pure-Python loop (no call in it releases the GIL), so no other thread of the worker runs meanwhile, the report
thread included; ``/garbage?N`` makes N objects that only the collector frees (reference cycles) and runs
``gc.collect()``.
"""

import gc
import os
import sys
import time

#: what /grow keeps: one block per request, for the life of the worker
KEPT: list[bytes] = []


def _grow(megabytes: float) -> None:
    KEPT.append(b"\x01" * int(megabytes * (1 << 20)))


def _burn(seconds: float) -> None:
    # the clock is read every 100 000 additions: reading the thread's CPU clock is a system call, and read in a
    # tight loop it would make half of the time system time
    deadline = time.thread_time() + seconds
    total = 0
    while time.thread_time() < deadline:
        for i in range(100_000):
            total += i


def _hold(seconds: float) -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        deadline = time.perf_counter() + seconds
        spins = 0
        while time.perf_counter() < deadline:
            spins += 1  # pure Python: the interpreter keeps the GIL
    finally:
        sys.setswitchinterval(previous)


def _garbage(objects: int) -> None:
    for _ in range(objects):
        node: dict = {}
        node["self"] = node
    gc.collect()


ROUTES = {"/grow": _grow, "/burn": _burn, "/hold": _hold, "/garbage": lambda n: _garbage(int(n))}


def app(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", "/"))
    if route is not None:
        route(float(environ.get("QUERY_STRING") or 0))
    body = f"{os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
