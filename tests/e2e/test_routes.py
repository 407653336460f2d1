"""``http.route`` end to end: Flask, Django and FastAPI served by real gunicorn, counted at the merged endpoint."""

from __future__ import annotations

import concurrent.futures
import http.client
import itertools
import os
import signal

import pytest

from harness import net
from harness.gunicorn import Gunicorn
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

DURATION = "http_server_request_duration_seconds_count"

#: (application, worker arguments, the items template, the health template), as each framework writes them
SERVERS = {
    "flask-sync": ("routes_flask:app", ["-k", "sync"], "/items/<int:item_id>", "/health"),
    "django-gthread": (
        "routes_django:application",
        ["-k", "gthread", "--threads", "4"],
        "items/<int:item_id>",
        "health",
    ),
    "fastapi-uvicorn-worker": (
        "routes_fastapi:app",
        ["-k", "uvicorn_worker.UvicornWorker"],
        "/items/{item_id}",
        "/health",
    ),
    # gunicorn's asgi worker hands post_request the response (its status) only with an access log
    "fastapi-asgi": (
        "routes_fastapi:app",
        ["-k", "asgi", "--access-logfile", "/dev/null"],
        "/items/{item_id}",
        "/health",
    ),
    # Django's ASGI handler: the route goes into the scope, not the environ
    "django-asgi": (
        "routes_django:asgi_application",
        ["-k", "asgi", "--access-logfile", "/dev/null"],
        "items/<int:item_id>",
        "health",
    ),
    "django-uvicorn-worker": (
        "routes_django:asgi_application",
        ["-k", "uvicorn_worker.UvicornWorker"],
        "items/<int:item_id>",
        "health",
    ),
}

#: (application, worker arguments, environment, the scope of the framework's own request metric, the mounted route
#: as the framework writes it: a blueprint's url_prefix, a Django include(), a FastAPI mount, a router's prefix)
THEIRS = {
    "flask-sync": (
        "routes_flask_instrumented:app",
        ["-k", "sync"],
        # the instrumentation puts http.route on its metric in the stable HTTP conventions only
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"},
        "opentelemetry.instrumentation.flask",
        {"/v1/items/1": "/v1/items/<int:item_id>"},
    ),
    "django-gthread": (
        "routes_django_instrumented:application",
        ["-k", "gthread", "--threads", "4"],
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "http"},
        "opentelemetry.instrumentation.django",
        {"/v1/items/1": "v1/items/<int:item_id>"},
    ),
    "fastapi-uvicorn-worker": (
        "routes_fastapi:app",
        ["-k", "uvicorn_worker.UvicornWorker"],
        {},
        "fastapi",
        {"/v1/items/1": "/v1/items/{item_id}", "/api/things/1": "/api/things/{thing_id}"},
    ),
    "fastapi-asgi": (
        "routes_fastapi:app",
        ["-k", "asgi", "--access-logfile", "/dev/null"],
        {},
        "fastapi",
        {"/v1/items/1": "/v1/items/{item_id}", "/api/things/1": "/api/things/{thing_id}"},
    ),
}


def keep_alive_load(port: int, paths: list[str], connections: int = 8) -> list[int]:
    """GET every path once, over ``connections`` kept-alive connections side by side; the statuses, sorted."""

    def serve(share: list[str]) -> list[int]:
        connection = http.client.HTTPConnection(net.LOOPBACK, port, timeout=10)
        try:
            statuses = []
            for path in share:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            return statuses
        finally:
            connection.close()

    shares = [paths[i::connections] for i in range(connections)]
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        return sorted(itertools.chain.from_iterable(pool.map(serve, shares)))


def ours(server: Gunicorn, scope: str = "otel_gunicorn") -> list[tuple[dict[str, str], float]]:
    """otel_gunicorn's own request counts (or those of another instrumentation ``scope``), as (labels, count)."""
    return [(s.labels, s.value) for s in server.samples(DURATION) if s.labels.get("otel_scope_name") == scope]


def by_route(samples: list[tuple[dict[str, str], float]]) -> dict[str | None, float]:
    counted: dict[str | None, float] = {}
    for labels, value in samples:
        route = labels.get("http_route") or None  # the exposition writes "" where a series has no route
        counted[route] = counted.get(route, 0) + value
    return counted


@pytest.mark.parametrize("kind", SERVERS)
def test_each_request_counts_under_its_route_template(start_gunicorn, kind):
    """50 distinct ids, 10 health checks, 7 unknown paths: 50 under the items template, 10 under health, the 404s
    without route, no series naming a raw id."""
    app, args, items, health = SERVERS[kind]
    server = start_gunicorn(app, args=["-w", "2", *args])
    paths = [f"/items/{i}" for i in range(1000, 1050)] + ["/health"] * 10 + [f"/nowhere/{i}" for i in range(7)]
    assert [200] * 60 + [404] * 7 == keep_alive_load(server.port, paths)
    wanted = {items: 50.0, health: 10.0, None: 7.0}
    counted = wait_until(
        lambda: by_route(ours(server)),
        2 * server.interval + 5,
        until=lambda c: {k: c.get(k) for k in wanted} == wanted,
        what="requests by route",
    )
    assert wanted == {k: counted.get(k) for k in wanted}
    routes = {labels.get("http_route", "") for labels, _ in ours(server)}
    assert not any(str(i) in route for route in routes for i in range(1000, 1050))
    not_found = [labels for labels, _ in ours(server) if labels.get("http_response_status_code") == "404"]
    assert not_found and all(not labels.get("http_route") for labels in not_found)


@pytest.mark.parametrize("kind", ["flask-sync", "fastapi-asgi"])
def test_three_thousand_ids_make_one_series_per_method_and_status(start_gunicorn, kind):
    """3000 distinct ids: one series for the route, its count exact."""
    app, args, items, _health = SERVERS[kind]
    server = start_gunicorn(app, args=["-w", "2", *args])
    assert [200] * 3000 == keep_alive_load(server.port, [f"/items/{i}" for i in range(3000)])
    series = wait_until(
        lambda: [(labels, value) for labels, value in ours(server) if labels.get("http_route") == items],
        2 * server.interval + 5,
        until=lambda s: sum(value for _labels, value in s) == 3000,
        what="3000 under the items route",
    )
    assert [("GET", "200")] == [(lb["http_request_method"], lb["http_response_status_code"]) for lb, _v in series]


def test_a_route_named_by_hand_and_the_bound(start_gunicorn):
    """The environ key names a route by hand; past OTEL_GUNICORN_MAX_ROUTES new routes become _OTHER, counted."""
    server = start_gunicorn("routes_flask:app", args=["-w", "1"], env={"OTEL_GUNICORN_MAX_ROUTES": "2"})
    paths = ["/manual/a", "/manual/b", "/health", "/items/1", "/items/2"]
    assert [200] * 5 == keep_alive_load(server.port, paths, connections=1)
    # /ready (the probe) and /by-hand take the two places; /health and the items route fold
    wanted = {"/ready": 1.0, "/by-hand": 2.0, "_OTHER": 3.0}
    counted = wait_until(
        lambda: by_route(ours(server)), 2 * server.interval + 5, until=lambda c: c == wanted, what="folded routes"
    )
    assert wanted == counted
    assert 3.0 == server.wait_value("otel_gunicorn_http_route_overflow_total", 3.0)


def test_fastapi_native_telemetry_agrees_on_the_route(start_gunicorn):
    """FastAPI's own http.server.request.duration (scope fastapi) and ours name the same route."""
    app, args, items, _health = SERVERS["fastapi-uvicorn-worker"]
    server = start_gunicorn(app, args=["-w", "1", *args])
    assert [200] * 5 == keep_alive_load(server.port, [f"/items/{i}" for i in range(5)], connections=1)

    def routes_by_scope() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for sample in server.samples(DURATION):
            if "http_route" in sample.labels and "/items" in sample.labels["http_route"]:
                found.setdefault(sample.labels.get("otel_scope_name", ""), set()).add(sample.labels["http_route"])
        return found

    found = wait_until(
        routes_by_scope, 2 * server.interval + 5, until=lambda f: len(f) == 2, what="the route from both scopes"
    )
    assert {"otel_gunicorn": {items}, "fastapi": {items}} == found


@pytest.mark.parametrize("kind", THEIRS)
def test_the_frameworks_own_telemetry_names_the_same_routes(start_gunicorn, kind):
    """Beside the framework's own request metric (OpenTelemetry's Flask or Django instrumentation, FastAPI's native
    telemetry), one scrape shows both scopes counting every request under the same routes: the items template, health,
    the mounted routes with their prefix, the 404s without route."""
    app, args, env, scope, mounted = THEIRS[kind]
    _app, _args, items, health = SERVERS[kind]
    server = start_gunicorn(app, args=["-w", "2", *args], env=env)
    extra = [path for path in mounted for _ in range(5)]
    paths = [f"/items/{i}" for i in range(1000, 1050)] + ["/health"] * 10 + extra + [f"/nowhere/{i}" for i in range(7)]
    assert [200] * (60 + len(extra)) + [404] * 7 == keep_alive_load(server.port, paths)
    wanted = {items: 50.0, health: 10.0, None: 7.0, **{route: 5.0 for route in mounted.values()}}

    def both() -> tuple[dict[str | None, float], dict[str | None, float]]:
        return by_route(ours(server)), by_route(ours(server, scope))

    counted = wait_until(
        both,
        2 * server.interval + 5,
        until=lambda c: all({k: found.get(k) for k in wanted} == wanted for found in c),
        what=f"requests by route from otel_gunicorn and {scope}",
    )
    assert [wanted, wanted] == [{k: found.get(k) for k in wanted} for found in counted]
    # and nothing else on either side but the harness's readiness probes, the same on both
    assert counted[0] == counted[1]


def test_the_bound_holds_for_the_server_not_only_for_each_worker(start_gunicorn):
    """Two workers in turn, each within OTEL_GUNICORN_MAX_ROUTES=2 on its own: the server still names two routes, and
    the later worker's new route is recorded as _OTHER, counted as overflow."""
    server = start_gunicorn("routes_flask:app", args=["-w", "1"], env={"OTEL_GUNICORN_MAX_ROUTES": "2"})
    probes = wait_until(  # the harness's readiness probe: one request that got its 200
        lambda: server.value(DURATION, http_route="/ready", otel_scope_name="otel_gunicorn"),
        2 * server.interval + 5,
        until=lambda value: value is not None,
        what="the readiness probe counted",
    )
    assert [200] * 3 == keep_alive_load(server.port, ["/health"] * 3, connections=1)
    server.wait_value(DURATION, 3.0, http_route="/health", otel_scope_name="otel_gunicorn")
    [first] = server.worker_pids()
    os.kill(first, signal.SIGTERM)  # the arbiter replaces it: a worker that has seen no route yet
    wait_until(server.worker_pids, 30, what="a new worker", until=lambda pids: len(pids) == 1 and first not in pids)
    assert [200] * 4 == keep_alive_load(server.port, [f"/items/{i}" for i in range(4)], connections=1)
    wanted = {"/ready": probes, "/health": 3.0, "_OTHER": 4.0}
    counted = wait_until(
        lambda: by_route(ours(server)), 2 * server.interval + 5, until=lambda c: c == wanted, what="the items folded"
    )
    assert wanted == counted
    assert 4.0 == server.wait_value("otel_gunicorn_http_route_overflow_total", 4.0)
    assert "more than 2 distinct http.route values in this server" in server.log()
