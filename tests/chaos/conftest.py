"""Chaos suite: real gunicorn under steady bounded traffic and a 100 ms scraper while signals, recycles, floods and
collector outages hit it. Every loop is bounded in count and time; everything listens on loopback.

Each test fills the ``figures`` dict it is given; the figures are printed (``pytest -s``) and written, with every
other chaos test's of this session, to ``tests/chaos/results/latest.json`` (not versioned).

The servers come from the ``start_gunicorn`` and ``start_rotel`` fixtures (``tests/conftest.py``), processes and
``/proc`` from ``harness``; what is here is chaos-only: the background :class:`Scraper`, the steady :class:`Traffic`,
and the figures.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import net
from harness.scrape import Exposition, fetch
from harness.waiting import wait_until

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: chaos tests (signals, recycling, floods, outages) against real gunicorn")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.chaos)


# ---------------------------------------------------------------- results


_session_results: dict[str, Any] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """What the test measured: printed and written to results/latest.json even when the test fails."""
    measured: dict[str, Any] = {}
    started = time.monotonic()
    yield measured
    measured["duration_s"] = round(time.monotonic() - started, 2)
    report = getattr(request.node, "rep_call", None)
    measured["outcome"] = report.outcome if report is not None else "error"
    _session_results[request.node.name] = measured
    print(f"\n[chaos] {request.node.name}: {json.dumps(measured, indent=None, sort_keys=True)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "tests": _session_results,
    }
    RESULTS.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- readings


def settle(measure: Callable[[], int], samples: int = 5, pause: float = 0.1) -> int:
    """The smallest of a few readings (a scrape thread may be finishing as we look)."""
    values = []
    for _ in range(samples):
        values.append(measure())
        time.sleep(pause)  # pacing: readings spread over ``samples * pause`` seconds
    return min(values)


# ---------------------------------------------------------------- scraping


@dataclasses.dataclass
class Scrape:
    at: float
    ok: bool
    latency: float
    requests_total: float | None = None
    slots: tuple[str, ...] = ()
    master_pid: str | None = None
    error: str = ""


def scrape(metrics_port: int, timeout: float = 5.0) -> Scrape:
    """One scrape of the endpoint: success, latency, app_requests_total, app_worker_pid slots, target_info pid."""
    at = time.monotonic()
    try:
        latency, body = fetch(metrics_port, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        return Scrape(at, False, time.monotonic() - at, error=repr(exc))
    exposition = Exposition(body.decode())
    slots = tuple(sorted(s.labels.get("gunicorn_worker_slot", "?") for s in exposition.samples("app_worker_pid")))
    info = exposition.samples("target_info")
    master = info[0].labels.get("process_pid") if info else None
    return Scrape(at, True, latency, exposition.value("app_requests_total"), slots, master)


def requests_total(metrics_port: int) -> float | None:
    result = scrape(metrics_port)
    if not result.ok:
        raise OSError(result.error)
    return result.requests_total


def median_scrape_ms(metrics_port: int, count: int = 20) -> float:
    latencies = []
    for _ in range(count):
        result = scrape(metrics_port)
        assert result.ok, result.error
        latencies.append(result.latency)
    return round(statistics.median(latencies) * 1000, 2)


class Scraper:
    """Scrapes every ``period`` seconds from a background thread, recording every scrape; bounded in time."""

    def __init__(self, metrics_port: int, period: float = 0.1, max_seconds: float = 150.0) -> None:
        self.metrics_port = metrics_port
        self.period = period
        self.max_seconds = max_seconds
        self.records: list[Scrape] = []
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not self._running.is_set():
                self._idle.set()
                self._running.wait(0.1)
                continue
            self._idle.clear()
            self.records.append(scrape(self.metrics_port))
            self._stop.wait(self.period)  # pacing: one scrape every ``period``
        self._idle.set()

    def pause(self) -> None:
        """Stop scraping and wait for the scrape in flight to finish."""
        self._running.clear()
        self._idle.clear()
        if self._thread.is_alive():
            self._idle.wait(10)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(15)

    # ---------------------------------------------------------------- verdicts

    @property
    def misses(self) -> list[Scrape]:
        return [r for r in self.records if not r.ok]

    def decreases(self) -> list[tuple[float | None, float | None]]:
        """Pairs of consecutive successful scrapes where app_requests_total went down (or vanished)."""
        values = [r.requests_total for r in self.records if r.ok]
        seen = [v for v in values if v is not None]
        bad: list[tuple[float | None, float | None]] = [(a, b) for a, b in zip(seen, seen[1:]) if b < a]
        first = next((i for i, v in enumerate(values) if v is not None), len(values))
        bad += [(None, None) for v in values[first:] if v is None]
        return bad

    def summary(self) -> dict[str, Any]:
        latencies = sorted(r.latency for r in self.records if r.ok)
        return {
            "scrapes": len(self.records),
            "misses": len(self.misses),
            "miss_errors": sorted({r.error for r in self.misses})[:5],
            "latency_median_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "latency_max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
            "counter_decreases": len(self.decreases()),
        }


# ---------------------------------------------------------------- traffic


class Traffic:
    """Steady application traffic from ``concurrency`` threads, bounded in count and time; can be paused.

    ``ok`` counts responses with status 200; ``failures`` holds every other outcome (status or exception).
    """

    def __init__(
        self,
        port: int,
        *,
        max_requests: int,
        max_seconds: float,
        concurrency: int = 2,
        delay: float = 0.005,
        path: str = "/",
    ) -> None:
        self.port = port
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.delay = delay
        self.path = path
        self.ok = 0
        self.sent = 0
        self.failures: list[str] = []
        self._cond = threading.Condition()
        self._paused = False
        self._stopped = False
        self._in_flight = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"chaos-traffic-{i}", daemon=True) for i in range(concurrency)
        ]
        self._deadline = 0.0

    def __enter__(self) -> Traffic:
        self._deadline = time.monotonic() + self.max_seconds
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: not self._paused or self._stopped, timeout=1.0)
                if self._stopped or self.sent >= self.max_requests or time.monotonic() > self._deadline:
                    return
                if self._paused:
                    continue
                self.sent += 1
                self._in_flight += 1
            outcome = ""
            try:
                status, _body = net.get(self.port, self.path, timeout=10)
                if status != 200:
                    outcome = f"status {status}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = repr(exc)
            with self._cond:
                self._in_flight -= 1
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
                self._cond.notify_all()
            if self.delay:
                time.sleep(self.delay)  # pacing: steady traffic, not a flood

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._threads)

    def pause(self) -> int:
        """No new request from now on; return the 200s once every request in flight has finished."""
        with self._cond:
            self._paused = True
            assert self._cond.wait_for(lambda: self._in_flight == 0, timeout=15), "requests in flight for 15 s"
            return self.ok

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert self.done, f"traffic still running after {timeout} s"

    def stop(self) -> int:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self.join(15)
        return self.ok


def wait_counter_settled(metrics_port: int, interval: float, timeout: float = 20.0) -> float:
    """Wait until app_requests_total has not moved for two report intervals; return it."""
    last: list[Any] = [None, time.monotonic()]  # value, since when

    def settled(value: float | None) -> bool:
        if value != last[0]:
            last[:] = [value, time.monotonic()]
            return False
        return value is not None and time.monotonic() - last[1] >= 2 * interval

    value = wait_until(
        lambda: requests_total(metrics_port),
        timeout,
        what=f"app_requests_total to stay put for {2 * interval} s",
        until=settled,
    )
    assert value is not None  # settled accepts no None
    return value
