"""HTTP/2 with real gunicorn: each stream is one request with ``network.protocol.version`` = 2, and what the
connection gauge shows while one connection carries several streams. Cleartext HTTP/2 (h2c) on loopback.

gunicorn serves h2c (``--http2-cleartext``) from 26.2 on, and only to peers in ``forwarded_allow_ips``; the servers
here take ``both`` (prior knowledge and upgrade) rather than ``prior-knowledge`` alone, because with prior knowledge
alone gunicorn answers an HTTP/1.1 request from a trusted peer with 400 — and the harness's readiness probe is one.
The probe's request is counted with version 1.1, so these tests count version 2 only.

curl 7.88 cannot reuse a prior-knowledge connection (a second request on it fails with "Error in the HTTP2 framing
layer", curl/curl#10634, fixed in curl 8.0): each curl here makes one request on its own connection, and the streams
sharing one connection come from the ``h2`` package (gunicorn's ``http2`` extra), driven by hand.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import gunicorn
import pytest

from harness.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        gunicorn.version_info < (26, 2),
        reason="gunicorn serves HTTP/2 from 25.0, and cleartext HTTP/2 (--http2-cleartext) from 26.2",
    ),
    pytest.mark.skipif(importlib.util.find_spec("h2") is None, reason="HTTP/2 needs gunicorn[http2] (the h2 package)"),
]

COUNT = "http_server_request_duration_seconds_count"
IN_FLIGHT = "http_server_active_requests"
CONNECTIONS = "gunicorn_worker_active_connections"
H2C = ["--http-protocols", "h2,h1", "--http2-cleartext", "both", "--forwarded-allow-ips", "127.0.0.1"]

# worker -> (module it needs, application, worker arguments, requests one connection's streams run at once)
SERVED = {
    "gthread": (None, "slow:app", ["-k", "gthread", "--threads", "4"], 1),
    "gevent": ("gevent", "slow:app", ["-k", "gevent"], 1),
    "asgi": (None, "slow_asgi:app", ["-k", "asgi"], None),  # None: all of them
}
# what gunicorn 27 does with HTTP/2 on the other classes (checked by hand)
REFUSED = {
    "sync": "gunicorn's sync worker does not serve HTTP/2: it logs a warning and falls back to HTTP/1.1 only",
    "tornado": "gunicorn's tornado worker does not serve HTTP/2: it logs a warning and falls back to HTTP/1.1 only",
    "gevent_pywsgi": "gevent's pywsgi server parses HTTP/1 only: it rejects the HTTP/2 preface as an invalid request",
    "uvicorn-worker": "uvicorn serves HTTP/1.1 only; gunicorn's --http-protocols does not reach it",
}
WORKERS = [*SERVED, *(pytest.param(name, marks=pytest.mark.skip(reason=why)) for name, why in REFUSED.items())]


def start(start_gunicorn: Callable[..., Any], worker: str) -> Any:
    module, app, args, _concurrent = SERVED[worker]
    if module is not None and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    return start_gunicorn(app, args=["-w", "1", *args, *H2C])


def curl_h2(port: int, path: str = "/") -> str:
    """One request with ``curl --http2-prior-knowledge`` on a new connection: ``"<http version> <status>"``."""
    done = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]
        + ["--max-time", "20", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout + done.stderr


def streams_on_one_connection(port: int, paths: list[str], timeout: float = 60.0) -> dict[int, int]:
    """Open one cleartext HTTP/2 connection, send a GET stream for every path at once, and return each stream's
    status once all have ended."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    statuses: dict[int, int] = {}
    ended: set[int] = set()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn.initiate_connection()
        for path in paths:
            stream = conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]
            conn.send_headers(stream, headers, end_stream=True)
        sock.sendall(conn.data_to_send())
        while len(ended) < len(paths):
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"connection closed after streams {sorted(ended)} of {len(paths)}")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            sock.sendall(conn.data_to_send())
    return statuses


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (with HTTP/2 support)")
@pytest.mark.parametrize("worker", WORKERS)
def test_30_requests_over_h2c_are_counted_with_protocol_version_2(start_gunicorn, worker):
    """30 requests with ``curl --http2-prior-knowledge`` raise the version-2 request count by exactly 30."""
    server = start(start_gunicorn, worker)
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _i: curl_h2(server.port), range(30)))
    assert ["2 200"] * 30 == answers
    server.wait_value(COUNT, 30, network_protocol_version="2")
    wait_until(
        lambda: server.value(COUNT, network_protocol_version="1.1"),
        5,
        what="the probe's count",
        until=lambda count: count is not None,
    )
    # a late second count of any stream, or a stream counted as HTTP/1.1, would show by now
    assert 30 == server.value(COUNT, network_protocol_version="2")
    # the asgi worker hands post_request no response unless access logging is on: no status code then
    assert {"200"} >= {s.labels.get("http_response_status_code", "200") for s in server.samples(COUNT)}
    assert {"1.1", "2"} == {s.labels["network_protocol_version"] for s in server.samples(COUNT)}


def readings_while(server: Any, busy: threading.Thread) -> list[tuple[float | None, float | None]]:
    """``(connections, requests in flight)`` from one scrape every 0.2 s while ``busy`` runs; only the scrapes
    that saw work in flight."""
    readings = []
    while busy.is_alive():
        scrape = server.scrape()
        if scrape.value(IN_FLIGHT):
            readings.append((scrape.value(CONNECTIONS), scrape.value(IN_FLIGHT)))
        busy.join(0.2)
    return readings


@pytest.mark.parametrize("worker", WORKERS)
def test_streams_on_one_connection_count_as_one_connection(start_gunicorn, worker):
    """4 slow streams held on one connection: the connection gauge never shows more than 1, the requests in flight
    reach what the worker class runs at once (gthread and gevent serve a connection's streams one after another,
    asgi all together), and every stream is counted as a request."""
    server = start(start_gunicorn, worker)
    streams = 4
    at_once = SERVED[worker][3] or streams
    statuses: dict[int, int] = {}
    client = threading.Thread(
        target=lambda: statuses.update(streams_on_one_connection(server.port, ["/slow?2"] * streams))
    )
    client.start()
    readings = readings_while(server, client)

    assert [200] * streams == list(statuses.values())
    assert readings, "no scrape saw a request in flight"
    connections = {c for c, _ in readings}
    assert ({None} if worker == "gevent" else {1}) == connections  # gevent reports no connection gauge
    assert at_once == max(r for _, r in readings)
    server.wait_value(COUNT, streams, network_protocol_version="2")
    server.wait_value(IN_FLIGHT, 0)
