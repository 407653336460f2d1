"""Unit tests for the worker state readers (otel_gunicorn._worker.state): the chooser, each class's values, absence."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gevent.pywsgi
import pytest
from gunicorn.asgi import protocol as asgi_protocol
from gunicorn.config import Config
from gunicorn.workers import gasgi, gthread
from gunicorn.workers.base import Worker
from gunicorn.workers.gasgi import ASGIWorker
from gunicorn.workers.ggevent import GeventPyWSGIWorker, GeventWorker
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker
from uvicorn.server import Server
from uvicorn_worker import UvicornH11Worker, UvicornWorker

from otel_gunicorn._worker.state import ThreadPool, WorkerStateReader, count, size, state_reader
from otel_gunicorn._worker.state.asgi import ASGIReader
from otel_gunicorn._worker.state.gevent import GeventPyWSGIReader, GeventReader
from otel_gunicorn._worker.state.gthread import ThreadWorkerReader
from otel_gunicorn._worker.state.sync import SyncReader
from otel_gunicorn._worker.state.tornado import TornadoReader
from otel_gunicorn._worker.state.uvicorn import UvicornReader

READERS = [
    WorkerStateReader,
    SyncReader,
    ThreadWorkerReader,
    GeventReader,
    GeventPyWSGIReader,
    ASGIReader,
    TornadoReader,
    UvicornReader,
]
METHODS = ["active_connections", "connection_limit", "thread_pool"]
GTHREAD_SOURCE = inspect.getsource(gthread)


class QuietLog:
    """A stand-in for gunicorn's logger that drops everything (the worker logs access lines and debug notes)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Exploding:
    """A worker whose every attribute raises something other than AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


def stand_in_class(module: str, name: str) -> type:
    """A worker class carrying another module's name, for classes whose real module cannot be imported here."""
    return type(name, (Worker,), {"__module__": module})


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Any]]:
    """Build real gunicorn workers from a real Config with the given settings; close their heartbeat files after."""
    made: list[Any] = []

    def make(worker_class: type, sockets: list[Any] | None = None, log: Any = None, **settings: Any) -> Any:
        cfg = Config()
        for name, value in settings.items():
            cfg.set(name, value)
        worker = worker_class(1, os.getpid(), sockets or [], None, 30, cfg, log)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.tmp.close()


@pytest.fixture
def uvicorn_loggers() -> Iterator[SimpleNamespace]:
    """A log stand-in for UvicornWorker, which re-points uvicorn's loggers at it; restored afterwards."""
    saved = {}
    for name in ("uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers, logger.level, logger.propagate)
    yield SimpleNamespace(
        error_log=logging.getLogger("tests.state.error"), access_log=logging.getLogger("tests.state.access")
    )
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = handlers, propagate
        logger.setLevel(level)


# The chooser


@pytest.mark.parametrize(
    ("worker_class", "reader_class"),
    [
        (SyncWorker, SyncReader),
        (ThreadWorker, ThreadWorkerReader),
        (GeventWorker, GeventReader),
        (GeventPyWSGIWorker, GeventPyWSGIReader),
        (ASGIWorker, ASGIReader),
        (UvicornWorker, UvicornReader),
        (UvicornH11Worker, UvicornReader),
    ],
)
def test_chooser_picks_the_reader_of_each_real_worker_class(worker_class: type, reader_class: type) -> None:
    """Each installed worker class gets its own reader."""
    assert reader_class is type(state_reader(object.__new__(worker_class)))


@pytest.mark.parametrize(
    ("module", "name", "reader_class"),
    [
        ("gunicorn.workers.gtornado", "TornadoWorker", TornadoReader),
        ("uvicorn.workers", "UvicornWorker", UvicornReader),
        ("uvicorn_worker.workers", "UvicornWorker", UvicornReader),
    ],
)
def test_chooser_matches_classes_by_module_and_name(module: str, name: str, reader_class: type) -> None:
    """A class is recognised by module and qualified name alone (tornado is not installed; uvicorn.workers warns)."""
    assert reader_class is type(state_reader(object.__new__(stand_in_class(module, name))))


def test_chooser_picks_the_reader_of_a_known_base_class() -> None:
    """A user's subclass of ThreadWorker gets the gthread reader."""

    class TunedThreadWorker(ThreadWorker):
        pass

    assert ThreadWorkerReader is type(state_reader(object.__new__(TunedThreadWorker)))


def test_chooser_falls_back_to_the_base_reader_for_an_unknown_class() -> None:
    """A third-party worker class otel_gunicorn does not know gets the everything-absent base reader."""
    assert WorkerStateReader is type(state_reader(object.__new__(stand_in_class("thirdparty.workers", "FancyWorker"))))


def test_chooser_imports_no_server_library() -> None:
    """Choosing a reader for unknown and sync workers imports neither gevent, tornado nor uvicorn."""
    code = (
        "import sys\n"
        "from gunicorn.workers.sync import SyncWorker\n"
        "from otel_gunicorn._worker.state import state_reader\n"
        "state_reader(object()); state_reader(object.__new__(SyncWorker))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'gevent', 'tornado', 'uvicorn', 'uvicorn_worker'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == result.stdout.strip()


# Every reader: absence and errors


@pytest.mark.parametrize("reader_class", READERS)
@pytest.mark.parametrize("method", METHODS)
def test_missing_attributes_make_every_value_absent(reader_class: type, method: str) -> None:
    """A worker object without any of the expected attributes yields None, not 0."""
    assert getattr(reader_class(object()), method)() is None


@pytest.mark.parametrize("reader_class", READERS)
@pytest.mark.parametrize("method", METHODS)
def test_errors_while_reading_make_the_value_absent(reader_class: type, method: str) -> None:
    """An attribute that raises makes the value None instead of raising into the metric callback."""
    assert getattr(reader_class(Exploding()), method)() is None


def test_base_reader_assumes_request_hooks() -> None:
    """An unknown worker class is assumed to call pre_request/post_request like gunicorn's own workers."""
    assert WorkerStateReader(object()).requests_via_hooks is True


@pytest.mark.parametrize("value", [True, -1, 2.0, "3", None])
def test_count_rejects_what_is_not_a_count(value: object) -> None:
    """Booleans, negatives, floats, strings and None are not counts."""
    assert count(value) is None


def test_size_of_something_without_a_length_is_absent() -> None:
    """An object without len() has no size."""
    assert size(object()) is None


# sync


def test_sync_worker_calls_the_request_hooks() -> None:
    """SyncWorker.handle_request calls pre_request itself, so the sync reader relies on the hooks."""
    assert ("self.cfg.pre_request(self, req)" in inspect.getsource(SyncWorker.handle_request)) is SyncReader(
        object()
    ).requests_via_hooks


@pytest.mark.parametrize("method", METHODS)
def test_sync_worker_has_nothing_to_read(make_worker: Callable[..., Any], method: str) -> None:
    """A real SyncWorker reports no connection or thread state."""
    assert getattr(state_reader(make_worker(SyncWorker)), method)() is None


# gthread


def test_gthread_attribute_names_exist_in_the_installed_gunicorn(make_worker: Callable[..., Any]) -> None:
    """A real ThreadWorker has every attribute the gthread reader reads, and its module defines _DEFER."""
    worker = make_worker(ThreadWorker)
    names = ["nr_conns", "worker_connections", "keepalived_conns", "pending_conns", "tpool", "cfg"]
    assert [True] * len(names) + [True] == [hasattr(worker, name) for name in names] + [hasattr(gthread, "_DEFER")]


def test_gthread_accept_counts_the_connection_before_handing_it_to_the_pool() -> None:
    """ThreadWorker.accept increments nr_conns and submits the connection directly, so queued work is counted."""
    source = inspect.getsource(ThreadWorker.accept)
    assert [True, True] == [
        source.index("self.nr_conns += 1") < source.index("self.enqueue_req(conn)"),
        "self.tpool.submit(" in inspect.getsource(ThreadWorker.enqueue_req),
    ]


def test_gthread_active_connections_is_nr_conns(make_worker: Callable[..., Any]) -> None:
    """Active connections are the worker's nr_conns."""
    worker = make_worker(ThreadWorker)
    worker.nr_conns = 7
    assert 7 == state_reader(worker).active_connections()


def test_gthread_connection_limit_is_worker_connections(make_worker: Callable[..., Any]) -> None:
    """The connection limit is --worker-connections."""
    assert 42 == state_reader(make_worker(ThreadWorker, worker_connections=42)).connection_limit()


def test_gthread_parked_connections_are_not_in_the_pool(make_worker: Callable[..., Any]) -> None:
    """Kept-alive and pending connections count as open but occupy no thread."""
    worker = make_worker(ThreadWorker, threads=4)
    worker.nr_conns = 5
    worker.keepalived_conns.extend(["a", "b"])
    worker.pending_conns.append("c")
    worker.tpool = worker.get_thread_pool()
    try:
        actual = state_reader(worker).thread_pool()
    finally:
        worker.tpool.shutdown(wait=True)
    assert ThreadPool(busy=2, limit=4, queued=0) == actual


def test_gthread_busy_never_exceeds_the_thread_count(make_worker: Callable[..., Any]) -> None:
    """Work in the pool beyond the thread count with no readable queue is capped at the thread count."""
    worker = make_worker(ThreadWorker, threads=2)
    worker.nr_conns = 9
    assert ThreadPool(busy=2, limit=2, queued=None) == state_reader(worker).thread_pool()


def test_gthread_busy_never_goes_below_zero(make_worker: Callable[..., Any]) -> None:
    """Reads that momentarily disagree (more parked than open) give 0 busy threads, not a negative count."""
    worker = make_worker(ThreadWorker, threads=2)
    worker.nr_conns = 1
    worker.keepalived_conns.extend(["a", "b"])
    assert ThreadPool(busy=0, limit=2, queued=None) == state_reader(worker).thread_pool()


def test_gthread_unreadable_queue_leaves_the_rest_of_the_pool(make_worker: Callable[..., Any]) -> None:
    """A pool whose queue size raises reports queued as None and busy from the connection counts."""
    worker = make_worker(ThreadWorker, threads=3)
    worker.nr_conns = 2

    def broken_qsize() -> int:
        raise RuntimeError("qsize")

    worker.tpool = SimpleNamespace(_work_queue=SimpleNamespace(qsize=broken_qsize))
    assert ThreadPool(busy=2, limit=3, queued=None) == state_reader(worker).thread_pool()


def test_gthread_missing_pending_conns_is_absent_when_gunicorn_defers(make_worker: Callable[..., Any]) -> None:
    """Without pending_conns in a gunicorn that defers connections (25.2+), the split is unknown."""
    worker = make_worker(ThreadWorker)
    del worker.pending_conns
    assert state_reader(worker).thread_pool() is None


def test_gthread_missing_pending_conns_is_zero_before_deferral_existed(
    make_worker: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In 24.0 to 25.1 (no _DEFER, no pending_conns) nothing is pending, so the pool is still read."""
    monkeypatch.delattr(gthread, "_DEFER")
    worker = make_worker(ThreadWorker, threads=2)
    del worker.pending_conns
    worker.nr_conns = 3
    worker.keepalived_conns.append("a")
    assert ThreadPool(busy=2, limit=2, queued=None) == state_reader(worker).thread_pool()


def test_gthread_23_counts_the_futures_deque() -> None:
    """gunicorn 23.x's layout (futures deque and _keep, no keepalived_conns) reads the pool from len(futures)."""
    worker = SimpleNamespace(
        nr_conns=4, worker_connections=1000, futures=deque(["f1", "f2", "f3"]), _keep=deque(["k"]), tpool=None
    )
    worker.cfg = SimpleNamespace(threads=2)
    assert ThreadPool(busy=2, limit=2, queued=None) == ThreadWorkerReader(worker).thread_pool()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP listener with room for a few queued connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


def test_gthread_live_pool_with_six_slow_requests_on_two_threads(
    make_worker: Callable[..., Any], listener: socket.socket
) -> None:
    """Six slow requests accepted by a real ThreadWorker with two threads: 2 busy, 4 queued, 6 open connections."""
    worker = make_worker(ThreadWorker, log=QuietLog(), threads=2)
    entered, release = threading.Semaphore(0), threading.Event()

    def slow_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        entered.release()
        release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    # What ThreadWorker.init_process and load_wsgi set up before run().
    worker.wsgi = slow_app
    worker.tpool = worker.get_thread_pool()
    worker.method_queue.init()
    clients = [socket.create_connection(listener.getsockname()) for _ in range(6)]
    reader = state_reader(worker)
    try:
        for client in clients:
            client.sendall(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            worker.accept(listener)
        both_running = entered.acquire(timeout=5) and entered.acquire(timeout=5)
        actual = (both_running, reader.active_connections(), reader.thread_pool())
    finally:
        release.set()
        replies = [client.recv(64) for client in clients]
        for client in clients:  # before finish_request's graceful close, which waits for the client's FIN
            client.close()
        worker.tpool.shutdown(wait=True)
        deadline = time.monotonic() + 5
        while worker.nr_conns and time.monotonic() < deadline:  # finish_request closes each connection
            worker.method_queue.run_callbacks(None)
        worker.method_queue.close()
    assert (True, 6, ThreadPool(busy=2, limit=2, queued=4)) == actual
    assert [b"HTTP/1.1 200 OK"] * 6 == [reply[:15] for reply in replies]


# gevent


def test_gevent_pools_are_locals_sized_by_worker_connections_per_listener() -> None:
    """GeventWorker.run builds one Pool(worker_connections) per listener and stores none of them on the worker."""
    source = inspect.getsource(GeventWorker.run)
    assert [True, True, False] == [
        "for s in self.sockets:" in source,
        "pool = Pool(self.worker_connections)" in source,
        "self.pool" in source or "self.servers" in source,
    ]


def test_gevent_connection_limit_is_worker_connections_for_one_listener(make_worker: Callable[..., Any]) -> None:
    """One listener and --worker-connections 3 give a limit of 3."""
    worker = make_worker(GeventWorker, sockets=[object()], worker_connections=3)
    assert 3 == state_reader(worker).connection_limit()


def test_gevent_connection_limit_multiplies_by_listeners(make_worker: Callable[..., Any]) -> None:
    """Two listeners get a pool each, so --worker-connections 3 allows 6 connections."""
    worker = make_worker(GeventWorker, sockets=[object(), object()], worker_connections=3)
    assert 6 == state_reader(worker).connection_limit()


def test_gevent_active_connections_are_absent(make_worker: Callable[..., Any]) -> None:
    """No counter of open connections is reachable from a GeventWorker."""
    assert state_reader(make_worker(GeventWorker, sockets=[object()])).active_connections() is None


def test_gevent_pywsgi_handler_never_calls_gunicorn_hooks() -> None:
    """gevent's pywsgi serves requests without pre_request, so the pywsgi reader does not rely on the hooks."""
    assert ("pre_request" in inspect.getsource(gevent.pywsgi)) is GeventPyWSGIReader(object()).requests_via_hooks


def test_gevent_stream_worker_relies_on_the_hooks() -> None:
    """GeventWorker serves through AsyncWorker.handle_request, which calls pre_request."""
    assert GeventReader(object()).requests_via_hooks is True


# asgi


def test_asgi_protocol_counts_connections_on_the_worker() -> None:
    """ASGIProtocol increments worker.nr_conns on connection_made and decrements it on connection_lost."""
    assert [True, True] == [
        "self.worker.nr_conns += 1" in inspect.getsource(asgi_protocol.ASGIProtocol.connection_made),
        "self.worker.nr_conns -= 1" in inspect.getsource(asgi_protocol.ASGIProtocol.connection_lost),
    ]


def test_asgi_active_connections_is_nr_conns(make_worker: Callable[..., Any]) -> None:
    """Active connections are a real ASGIWorker's nr_conns."""
    worker = make_worker(ASGIWorker)
    worker.nr_conns = 3
    assert 3 == state_reader(worker).active_connections()


def test_asgi_worker_connections_is_only_stored() -> None:
    """gasgi assigns self.worker_connections and never reads it back, and the protocol never mentions it."""
    lines = [line.strip() for line in inspect.getsource(gasgi).splitlines() if "self.worker_connections" in line]
    assert (["self.worker_connections = self.cfg.worker_connections"], False) == (
        lines,
        "worker_connections" in inspect.getsource(asgi_protocol),
    )


def test_asgi_connection_limit_is_absent(make_worker: Callable[..., Any]) -> None:
    """A configured --worker-connections is not reported as a limit the asgi worker does not enforce."""
    assert state_reader(make_worker(ASGIWorker, worker_connections=5)).connection_limit() is None


def test_asgi_calls_the_hooks_for_http_requests_but_not_websockets() -> None:
    """pre_request runs for HTTP/1 and HTTP/2 requests and not for WebSocket sessions."""
    assert [True, True, False] == [
        "self._pre_request(self.worker, request)" in inspect.getsource(asgi_protocol.ASGIProtocol._handle_http_request),
        "self._pre_request(self.worker, request)"
        in inspect.getsource(asgi_protocol.ASGIProtocol._handle_http2_request),
        "_pre_request" in inspect.getsource(asgi_protocol.ASGIProtocol._handle_websocket),
    ]


def test_asgi_skips_only_the_default_pre_request_hook() -> None:
    """A pre_request hook set in the config is always returned by _pre_request_hook, so ours always runs."""
    cfg = Config()
    cfg.set("pre_request", lambda worker, req: None)
    assert cfg.pre_request is asgi_protocol._pre_request_hook(cfg, QuietLog())


# tornado


def gtornado_source() -> str:
    """gunicorn's tornado worker module, read as text: importing it needs tornado, which is not installed here."""
    spec = importlib.util.find_spec("gunicorn.workers.gtornado")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).read_text()


def test_tornado_worker_keeps_its_server_and_no_hooks() -> None:
    """TornadoWorker.run stores its HTTPServer as self.server and never calls pre_request."""
    source = gtornado_source()
    assert [True, False] == ["self.server = server" in source, "pre_request" in source]


def test_tornado_active_connections_are_the_server_connections() -> None:
    """Open connections are the size of tornado's HTTPServer._connections set."""
    worker: Any = object.__new__(stand_in_class("gunicorn.workers.gtornado", "TornadoWorker"))
    worker.server = SimpleNamespace(_connections={"c1", "c2", "c3"})
    assert 3 == state_reader(worker).active_connections()


def test_tornado_active_connections_absent_before_run() -> None:
    """Before run() creates the server, open connections are absent."""
    worker: Any = object.__new__(stand_in_class("gunicorn.workers.gtornado", "TornadoWorker"))
    assert state_reader(worker).active_connections() is None


def test_tornado_http_server_keeps_a_connection_set() -> None:
    """A real tornado HTTPServer has the _connections set the tornado reader measures."""
    httpserver = pytest.importorskip("tornado.httpserver")
    assert set() == httpserver.HTTPServer(lambda request: None)._connections


def test_chooser_picks_the_tornado_reader_for_the_real_class() -> None:
    """Where tornado is installed, the real TornadoWorker gets the tornado reader."""
    pytest.importorskip("tornado")
    from gunicorn.workers.gtornado import TornadoWorker

    assert TornadoReader is type(state_reader(object.__new__(TornadoWorker)))


def test_tornado_does_not_rely_on_the_hooks() -> None:
    """The tornado reader tells the caller not to expect pre_request/post_request."""
    assert TornadoReader(object()).requests_via_hooks is False


# uvicorn


def test_uvicorn_server_is_a_local_of_serve() -> None:
    """UvicornWorker._serve keeps the Server in a local variable, not on the worker."""
    source = inspect.getsource(UvicornWorker._serve)
    assert [True, False] == ["server = Server(config=self.config)" in source, "self.server" in source]


def test_uvicorn_connection_limit_is_limit_concurrency(
    make_worker: Callable[..., Any], uvicorn_loggers: SimpleNamespace
) -> None:
    """A real UvicornWorker subclass with limit_concurrency in CONFIG_KWARGS reports it as the limit."""

    class LimitedWorker(UvicornWorker):
        CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "limit_concurrency": 7}

    assert 7 == state_reader(make_worker(LimitedWorker, log=uvicorn_loggers)).connection_limit()


def test_uvicorn_connection_limit_absent_by_default(
    make_worker: Callable[..., Any], uvicorn_loggers: SimpleNamespace
) -> None:
    """A stock UvicornWorker has no limit_concurrency, so no limit."""
    assert state_reader(make_worker(UvicornWorker, log=uvicorn_loggers)).connection_limit() is None


def test_uvicorn_active_connections_absent_by_default(
    make_worker: Callable[..., Any], uvicorn_loggers: SimpleNamespace
) -> None:
    """A stock UvicornWorker exposes no server, so open connections are absent."""
    assert state_reader(make_worker(UvicornWorker, log=uvicorn_loggers)).active_connections() is None


def test_uvicorn_active_connections_from_an_exposed_server(
    make_worker: Callable[..., Any], uvicorn_loggers: SimpleNamespace
) -> None:
    """A subclass that keeps its real uvicorn Server as self.server reports its open connections."""
    worker = make_worker(UvicornWorker, log=uvicorn_loggers)
    worker.server = Server(config=worker.config)
    worker.server.server_state.connections.update({"c1", "c2"})
    assert 2 == state_reader(worker).active_connections()


def test_uvicorn_does_not_rely_on_the_hooks() -> None:
    """uvicorn serves requests without gunicorn's pre_request/post_request."""
    assert UvicornReader(object()).requests_via_hooks is False
