"""In-process CPU cost of otel_gunicorn's request path, and of an application's own synchronous instruments.

Run with ``.venv/bin/python bench/request_path_inprocess.py`` (about a minute); ``measure()`` returns the figures as
a dict of microseconds per request or per call. No sockets and no other process take part, so the figures are
stable on a noisy machine; what a real worker pays on top (gunicorn's own parsing and I/O) is figure 4 of
``bench/run.py``.

Every case runs in a fresh interpreter (``python bench/request_path_inprocess.py --case NAME``): each sets up
process-wide state of its own — gunicorn's logging, the global MeterProvider, ``PROMETHEUS_MULTIPROC_DIR`` — and
one must not colour the next. A case times a loop with ``time.process_time`` and reports the best of several
repetitions (the least disturbed by the rest of the machine).

The cases:

* **hook path** (``sync``, ``gthread``): what gunicorn runs around a request for its hooks — ``cfg.pre_request``,
  ``log.access``, ``cfg.post_request``, looked up in gunicorn's configuration as gunicorn does — with bare gunicorn's
  defaults, then with ``python:otel_gunicorn.conf`` and a worker runtime built by its own ``post_worker_init``
  (metrics on, tracing off, access log off: the defaults). The difference is otel_gunicorn's cost per request.
  gthread runs the same hooks on a thread of a pool, as its workers do.
* **application boundary** (``wsgi``, ``asgi``): the wrappers measuring requests for the worker classes that call
  no hooks (gevent_pywsgi, tornado, uvicorn-worker), against calling the bare application.
* **an application's own instruments**: one ``counter.add(1)`` and one ``histogram.record(v)`` through the provider a
  worker has (``fast_*``: otel_gunicorn's ``reporting_meter``, which aggregates them itself) and through the plain
  SDK MeterProvider it had before (``sdk_*``), instruments made at import time (before the worker's provider exists:
  the API's proxies, as in most applications) or after, without and with one attribute, with no span current and
  inside a sampled span, for each ``OTEL_METRICS_EXEMPLAR_FILTER``; against prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR`` set: values in mmap'ed files) ``inc()`` and ``observe(v)``. Instructions per call:
  run one case under ``valgrind --tool=callgrind`` with ``--case NAME --iterations N`` twice (two values of N) and
  divide the difference in instructions by the difference in N.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: loop iterations per timing; timings per case in one process (``--case``); rounds of timings taken in turns
#: by the cases compared (``measure()``): the best one of each is kept
ITERATIONS = 5_000
REPEATS = 5
ROUNDS = 15


def _best_us(loop: Callable[[int], None], iterations: int = ITERATIONS, repeats: int = REPEATS) -> float:
    """CPU microseconds per iteration of ``loop(iterations)``: the best of ``repeats`` timings, after a warm-up."""
    loop(iterations // 10)
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        loop(iterations)
        best = min(best, time.process_time() - started)
    return best / iterations * 1e6


# ---------------------------------------------------------------- gunicorn's hooks


class _Request:
    """What gunicorn's request objects offer the hooks, for a plain ``GET /`` as wrk sends it."""

    method, path, query, scheme, version = "GET", "/", "", "http", (1, 1)
    peer_addr = ("127.0.0.1", 50000)
    headers = [("HOST", "127.0.0.1:8000"), ("USER-AGENT", "wrk"), ("ACCEPT", "*/*")]


class _Response:
    status_code, status, headers_sent, sent = 200, "200 OK", True, 14


def _hooks(otel: bool, worker_class: str) -> Callable[[int], None]:
    """A loop over gunicorn's hook calls for one request, with bare gunicorn's or otel_gunicorn's configuration."""
    import datetime

    from gunicorn.config import Config

    cfg = Config()
    if otel:
        import otel_gunicorn.conf as conf

        for name, value in vars(conf).items():
            if name in cfg.settings:
                cfg.set(name, value)
    log = cfg.logger_class(cfg)
    if worker_class == "gthread":
        from gunicorn.workers.gthread import ThreadWorker as Worker
    else:
        from gunicorn.workers.sync import SyncWorker as Worker  # type: ignore[assignment]
    worker = Worker(1, os.getpid(), [], None, 30, cfg, log)
    if otel:
        from otel_gunicorn import _handoff, hooks
        from otel_gunicorn._config import Config as OtelConfig

        # as the arbiter hands it over at the fork: reports every hour (never during the timing), to a channel the
        # final report at exit does not reach (the process leaves with os._exit first)
        _handoff.inherit(OtelConfig(metrics_interval=3600.0), os.path.join(tempfile.gettempdir(), "no-channel"), {})
        hooks.post_fork(None, worker)
        hooks.post_worker_init(worker)
    req, resp, environ = _Request(), _Response(), {"REQUEST_METHOD": "GET", "PATH_INFO": "/"}
    request_time = datetime.timedelta(microseconds=100)

    def loop(iterations: int) -> None:
        for _ in range(iterations):
            cfg.pre_request(worker, req)  # looked up per request, as gunicorn does
            log.access(resp, req, environ, request_time)
            cfg.post_request(worker, req, environ, resp)

    if worker_class != "gthread":
        return loop
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    return lambda iterations: pool.submit(loop, iterations).result()


# ---------------------------------------------------------------- the application boundary


def _observer() -> Any:
    from otel_gunicorn._worker.request_stats import RequestStats
    from otel_gunicorn._worker.requests import RequestObserver
    from otel_gunicorn._worker.tracing import RequestTracing

    return RequestObserver(RequestStats(), 0, RequestTracing(None))


def _wsgi(wrapped: bool) -> Callable[[int], None]:
    body = [b"hello\n"]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        return body

    if wrapped:
        from otel_gunicorn._worker.app_boundary import WSGIRequests

        app = WSGIRequests(app, _observer())  # type: ignore[assignment]
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "RAW_URI": "/",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
    }

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    def loop(iterations: int) -> None:
        for _ in range(iterations):
            result = app(dict(base), start_response)  # a fresh environ per request, as a server makes
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return loop


def _asgi(wrapped: bool) -> Callable[[int], None]:
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]}
    body = {"type": "http.response.body", "body": b"hello\n"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(start)
        await send(body)

    if wrapped:
        from otel_gunicorn._worker.app_boundary import ASGIRequests

        app = ASGIRequests(app, _observer())  # type: ignore[assignment]
    base = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def loop(iterations: int) -> None:
        for _ in range(iterations):
            coroutine = app(dict(base), receive, send)  # driven by hand: the loop's own cost is not ours
            try:
                coroutine.send(None)
            except StopIteration:
                pass

    return loop


# ---------------------------------------------------------------- an application's own instruments


def _app(path: str, instrument: str, proxy: bool, attributes: bool, span: bool) -> Callable[[int], None]:
    """One measurement through a worker's provider: ``fast``, as otel_gunicorn's reporting_meter builds it (the
    application's synchronous instruments aggregated by otel_gunicorn), or ``sdk``, the plain SDK MeterProvider it
    built before (same reader, resource and exemplar filter)."""
    from opentelemetry import metrics
    from opentelemetry.sdk.trace import TracerProvider

    def make() -> Any:
        meter = metrics.get_meter("bench.app", "1.0")
        if instrument == "counter":
            return meter.create_counter("bench.requests", unit="{request}").add
        return meter.create_histogram("bench.duration", unit="s").record

    early = make() if proxy else None  # made at import time, before post_worker_init: the API's proxy
    _worker_provider(path)
    measure = early or make()
    attrs = {"http.route": "/users/{id}"} if attributes else None
    value = 1 if instrument == "counter" else 0.0042

    def loop(iterations: int) -> None:
        for _ in range(iterations):
            measure(value, attrs)

    if not span:
        return loop
    tracer = TracerProvider().get_tracer("bench")  # no processor: only the sampled span context matters here

    def in_span(iterations: int) -> None:
        with tracer.start_as_current_span("request"):
            loop(iterations)

    return in_span


def _worker_provider(path: str) -> None:
    """Set the global MeterProvider a worker has, reporting every hour (never during the timing)."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    from otel_gunicorn._worker.reporter import ChannelExporter, exemplar_filter, reporting_meter

    exporter = ChannelExporter(os.path.join(tempfile.gettempdir(), "no-channel"), send_timeout=1.0)
    if path == "fast":
        reporting_meter(exporter, 3600.0, "bench")
        return
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.get_empty(), exemplar_filter=exemplar_filter(os.environ)
    )
    metrics.set_meter_provider(provider)


def _prometheus(instrument: str, labels: bool) -> Callable[[int], None]:
    """prometheus_client's multiprocess mode, as gunicorn applications use it: PROMETHEUS_MULTIPROC_DIR set before
    prometheus_client is imported (the caller did), every value an mmap'ed file entry."""
    import prometheus_client

    labelnames = ("route",) if labels else ()
    if instrument == "counter":
        metric: Any = prometheus_client.Counter("bench_requests", "Requests.", labelnames)
        call = "inc"
    else:
        metric = prometheus_client.Histogram("bench_duration_seconds", "Durations.", labelnames)
        call = "observe"
    value = 1 if instrument == "counter" else 0.0042
    if not labels:
        measure = getattr(metric, call)

        def loop(iterations: int) -> None:
            for _ in range(iterations):
                measure(value)

        return loop

    def labelled(iterations: int) -> None:  # .labels() on every call, as an application with a label does
        for _ in range(iterations):
            getattr(metric.labels("/users/{id}"), call)(value)

    return labelled


# ---------------------------------------------------------------- cases


#: name -> (description, environment, arguments of the loop builder)
CASES: dict[str, tuple[str, dict[str, str], tuple[Any, ...]]] = {
    "hooks_bare_sync": ("sync hooks, bare gunicorn", {}, ("hooks", False, "sync")),
    "hooks_otel_sync": ("sync hooks, otel_gunicorn", {}, ("hooks", True, "sync")),
    "hooks_bare_gthread": ("gthread hooks, bare gunicorn", {}, ("hooks", False, "gthread")),
    "hooks_otel_gthread": ("gthread hooks, otel_gunicorn", {}, ("hooks", True, "gthread")),
    "wsgi_bare": ("WSGI application, bare", {}, ("wsgi", False)),
    "wsgi_boundary": ("WSGI application, wrapped", {}, ("wsgi", True)),
    "asgi_bare": ("ASGI application, bare", {}, ("asgi", False)),
    "asgi_boundary": ("ASGI application, wrapped", {}, ("asgi", True)),
}
for _instrument in ("counter", "histogram"):
    for _path, _filter in itertools.product(("sdk", "fast"), ("trace_based", "always_off", "always_on")):
        for _proxy, _attrs, _span in (
            (True, False, False),
            (False, False, False),
            (True, True, False),
            (True, False, True),
            (True, True, True),
        ):
            _name = (
                f"{_path}_{_instrument}_{_filter}{'_proxy' if _proxy else ''}{'_attr' if _attrs else ''}"
                f"{'_span' if _span else ''}"
            )
            CASES[_name] = (
                f"{'SDK' if _path == 'sdk' else 'otel_gunicorn'} {_instrument}, filter {_filter}",
                {"OTEL_METRICS_EXEMPLAR_FILTER": _filter},
                ("app", _path, _instrument, _proxy, _attrs, _span),
            )
    for _labels in (False, True):
        CASES[f"prometheus_{_instrument}{'_label' if _labels else ''}"] = (
            f"prometheus_client multiprocess {_instrument}",
            {},
            ("prometheus", _instrument, _labels),
        )

_BUILDERS: dict[str, Callable[..., Callable[[int], None]]] = {
    "hooks": _hooks,
    "wsgi": _wsgi,
    "asgi": _asgi,
    "app": _app,
    "prometheus": _prometheus,
}


def run_case(name: str, iterations: int = ITERATIONS) -> float:
    """Run one case in this interpreter (a fresh one: see the module doc); microseconds per iteration."""
    return _best_us(_build(name), iterations)


def _build(name: str) -> Callable[[int], None]:
    _description, _env, (kind, *args) = CASES[name]
    return _BUILDERS[kind](*args)


def _serve(name: str) -> None:
    """A case's child process: build it, warm it up, then for each line read (an iteration count) time that many
    iterations and print the microseconds per iteration. Ends at the end of its input."""
    loop = _build(name)
    loop(ITERATIONS // 10)
    for line in sys.stdin:
        iterations = int(line)
        started = time.process_time()
        loop(iterations)
        print((time.process_time() - started) / iterations * 1e6, flush=True)
    os._exit(0)  # no final report to a channel that does not exist, no SDK shutdown: nothing left to measure


def _groups(names: list[str]) -> list[list[str]]:
    """Cases compared with each other, timed in turns: bare and wrapped side by side, each instrument's variants
    with prometheus_client's."""
    groups: dict[str, list[str]] = {}
    for name in names:
        kind, *args = CASES[name][2]
        if kind == "hooks":
            key = f"{kind}:{args[1]}"
        elif kind in ("wsgi", "asgi"):
            key = kind
        else:  # each instrument's variants, otel_gunicorn's and the SDK's, with prometheus_client's
            key = f"app:{args[1] if kind == 'app' else args[0]}"
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _timed_group(names: list[str], iterations: int, rounds: int) -> dict[str, float]:
    """One child process per case, all alive at once, asked in turns ``rounds`` times to time ``iterations``
    iterations: whatever else the machine does then falls on every case alike. The best round of each counts."""
    best = dict.fromkeys(names, float("inf"))
    children: dict[str, subprocess.Popen[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-request-path-") as tmp:
        try:
            for name in names:
                env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GUNICORN_", "PROMETHEUS_"))}
                env.update(CASES[name][1])
                env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
                if name.startswith("prometheus"):
                    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=tmp)
                children[name] = subprocess.Popen(
                    [sys.executable, __file__, "--serve", name],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=open(os.path.join(tmp, f"{name}.err"), "w"),
                    text=True,
                )
            for _ in range(rounds):
                for name, child in children.items():
                    assert child.stdin is not None and child.stdout is not None
                    child.stdin.write(f"{iterations}\n")
                    child.stdin.flush()
                    line = child.stdout.readline()
                    if not line:
                        child.wait(30)
                        error = Path(tmp, f"{name}.err").read_text()
                        raise RuntimeError(f"case {name} failed ({child.returncode}):\n{error}")
                    best[name] = min(best[name], float(line))
        finally:
            for child in children.values():
                if child.stdin is not None:
                    child.stdin.close()
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
    return best


def measure(iterations: int = ITERATIONS, cases: list[str] | None = None, rounds: int = ROUNDS) -> dict[str, float]:
    """Microseconds per request (hook and boundary cases) or per call (instrument cases), by case name, plus the
    differences the table shows: ``*_overhead`` = otel_gunicorn's (or the wrapper's) cost per request."""
    figures: dict[str, float] = {}
    for group in _groups(cases or list(CASES)):
        figures.update((name, round(us, 3)) for name, us in _timed_group(group, iterations, rounds).items())
    for bare, ours, label in (
        ("hooks_bare_sync", "hooks_otel_sync", "hooks_sync_overhead"),
        ("hooks_bare_gthread", "hooks_otel_gthread", "hooks_gthread_overhead"),
        ("wsgi_bare", "wsgi_boundary", "wsgi_boundary_overhead"),
        ("asgi_bare", "asgi_boundary", "asgi_boundary_overhead"),
    ):
        if bare in figures and ours in figures:
            figures[label] = round(figures[ours] - figures[bare], 3)
    return figures


#: the application-instrument cases' name suffixes, as the table labels them
APP_VARIANTS = {
    "": "made after the provider, no attribute, no span",
    "_proxy": "made at import (API proxy), no attribute, no span",
    "_proxy_attr": "  ... with one attribute",
    "_proxy_span": "  ... inside a sampled span",
    "_proxy_attr_span": "  ... one attribute, inside a sampled span",
}


def table(figures: dict[str, float]) -> str:
    rows: list[tuple[str, str]] = []

    def row(label: str, *names: str) -> None:
        if all(n in figures for n in names):
            rows.append((label, "  ".join(f"{figures[n]:7.2f}" for n in names)))

    rows.append(("request path, µs per request", "   bare     otel  overhead"))
    row("  sync hooks (pre_request, access, post_request)", "hooks_bare_sync", "hooks_otel_sync", "hooks_sync_overhead")
    row(
        "  gthread hooks (on a pool thread)",
        "hooks_bare_gthread",
        "hooks_otel_gthread",
        "hooks_gthread_overhead",
    )
    row("  WSGI application boundary (gevent_pywsgi, tornado)", "wsgi_bare", "wsgi_boundary", "wsgi_boundary_overhead")
    row("  ASGI application boundary (uvicorn-worker)", "asgi_bare", "asgi_boundary", "asgi_boundary_overhead")
    for instrument, call in (("counter", "add(1)"), ("histogram", "record(v)")):
        rows.append((f"app {instrument}.{call}, µs per call", "trace_based always_off always_on"))
        for path in ("sdk", "fast"):
            for suffix, label in APP_VARIANTS.items():
                row(
                    f"  {'SDK (before)' if path == 'sdk' else 'otel_gunicorn'}, {label}",
                    *(f"{path}_{instrument}_{f}{suffix}" for f in ("trace_based", "always_off", "always_on")),
                )
        row("  prometheus_client multiprocess, no label", f"prometheus_{instrument}")
        row("  prometheus_client multiprocess, one label (.labels() per call)", f"prometheus_{instrument}_label")
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run one case in this interpreter and print its figure as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # a case's child process (see _timed_group)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timings per case, taken in turns (best kept)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON, not as a table")
    parser.add_argument("cases", nargs="*", help="only these cases (default: all)")
    options = parser.parse_args(argv)
    if options.serve:
        sys.path.insert(0, str(ROOT))
        _serve(options.serve)
    if options.case:
        sys.path.insert(0, str(ROOT))
        us = run_case(options.case, options.iterations)
        print(json.dumps({"case": options.case, "us": us}), flush=True)
        os._exit(0)  # no final report to a channel that does not exist, no SDK shutdown: nothing left to measure
    figures = measure(options.iterations, options.cases or None, options.rounds)
    print(json.dumps(figures, indent=2) if options.json else table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
