"""The core promise, checked from outside: every worker's metrics, exact, at one endpoint in the arbiter."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from harness.prometheus import promtool_check
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

WORKERS = ["-w", "3", "--threads", "2"]


def gauge_slots(server) -> dict[str, int]:
    """slot label -> worker pid, from the app's observable gauge."""
    return {s.labels["gunicorn_worker_slot"]: int(s.value) for s in server.samples("app_worker_pid")}


def test_counter_and_histogram_are_exact_across_workers(start_gunicorn):
    """300 requests over 3 workers read exactly 300 on the counter and on the histogram count."""
    server = start_gunicorn(args=WORKERS)
    assert [200] * 300 == server.load(300)
    assert 300 == server.wait_value("app_requests_total", 300, timeout=2 * server.interval + 2)
    assert 300 == server.value("app_latency_seconds_count")
    assert 0 == server.value("app_in_flight")


def test_observable_gauge_has_one_series_per_worker_slot(start_gunicorn):
    """An app's observable gauge yields one series per live worker, labelled with slots 0, 1 and 2."""
    server = start_gunicorn(args=WORKERS)
    slots = wait_until(lambda: gauge_slots(server), 10, what="3 gauges", until=lambda slots: len(slots) == 3)
    assert {"0", "1", "2"} == set(slots)
    assert server.worker_pids() == set(slots.values())


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_killed_worker_keeps_its_counts_and_frees_its_slot(start_gunicorn, preload):
    """kill -9 of a worker: its gauge goes, its replacement reuses the slot, the counter never drops and ends exact."""
    server = start_gunicorn(args=WORKERS + (["--preload"] if preload else []))
    assert [200] * 300 == server.load(300)
    server.wait_value("app_requests_total", 300)
    slots = wait_until(lambda: gauge_slots(server), 10, what="3 gauges", until=lambda slots: len(slots) == 3)

    seen: list[float] = []
    stop = threading.Event()

    def scrape_forever() -> None:
        while not stop.is_set():
            value = server.value("app_requests_total")
            if value is not None:
                seen.append(value)
            time.sleep(0.1)  # pacing: a scrape every 100 ms, as a busy Prometheus would

    scraper = threading.Thread(target=scrape_forever)
    scraper.start()
    try:
        victim_slot, victim_pid = sorted(slots.items())[1]
        os.kill(victim_pid, signal.SIGKILL)
        wait_until(
            lambda: gauge_slots(server),
            10,
            what=f"the dead worker's gauge to go (pid {victim_pid})",
            until=lambda slots: victim_pid not in slots.values(),
        )
        wait_until(
            lambda: gauge_slots(server),
            15,
            what=f"the replacement worker to take the freed slot {victim_slot}",
            until=lambda slots: len(slots) == 3 and slots[victim_slot] != victim_pid,
        )
        assert {"0", "1", "2"} == set(gauge_slots(server))
        assert [200] * 100 == server.load(100)
        server.wait_value("app_requests_total", 400)
        wait_until(lambda: seen[-1:], 5, what="the scraper to see 400", until=lambda last: last == [400])
    finally:
        stop.set()
        scraper.join()
    assert seen, "the endpoint was scraped while the worker died"
    assert all(a <= b for a, b in zip(seen, seen[1:])), f"counter decreased: {seen}"
    assert 400 == seen[-1]


def test_promtool_accepts_the_exposition(start_gunicorn):
    """promtool check metrics finds nothing wrong with a scrape of a busy server."""
    server = start_gunicorn(args=WORKERS)
    server.load(30)
    server.wait_value("app_requests_total", 30)
    result = promtool_check(server.scrape_text())
    assert (0, "") == (result.returncode, result.stdout + result.stderr)


def test_openmetrics_is_served_when_asked_for(start_gunicorn):
    """An OpenMetrics Accept header gets the OpenMetrics format, terminated by # EOF."""
    server = start_gunicorn(args=WORKERS)
    server.load(5)
    server.wait_value("app_requests_total", 5)
    text = server.scrape_text(accept="application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert text.rstrip().endswith("# EOF")
    assert "app_requests_total" in text


def test_target_info_carries_the_service_name(start_gunicorn):
    """OTEL_SERVICE_NAME reaches target_info, one resource for the whole server."""
    server = start_gunicorn(args=WORKERS, env={"OTEL_SERVICE_NAME": "shop"})
    [info] = server.samples("target_info")
    assert "shop" == info.labels["service_name"]
    assert str(server.pid) == info.labels["process_pid"]


def test_prometheus_server_scrapes_the_exact_total(start_gunicorn, start_prometheus):
    """The real Prometheus server scrapes the endpoint and PromQL sees exactly the requests served."""
    server = start_gunicorn(args=WORKERS)
    prometheus = start_prometheus([f"127.0.0.1:{server.metrics_port}"])
    assert [200] * 300 == server.load(300)
    server.wait_value("app_requests_total", 300)

    def queried() -> float | None:
        result = prometheus.query('sum(app_requests_total{job="gunicorn"})')
        return float(result[0]["value"][1]) if result else None

    assert 300 == wait_until(queried, 20, what="Prometheus to see 300", until=lambda total: total == 300)
    up = prometheus.query('up{job="gunicorn"}')
    assert ["1"] == [r["value"][1] for r in up]
    slots = prometheus.query('count(app_worker_pid{job="gunicorn"}) by (gunicorn_worker_slot)')
    assert {"0", "1", "2"} == {r["metric"]["gunicorn_worker_slot"] for r in slots}


def test_graceful_recycling_flushes_every_count(start_gunicorn):
    """With --max-requests every worker exits gracefully many times; its final report keeps the total exact."""
    server = start_gunicorn(args=["-w", "2", "--max-requests", "10"])
    for _ in range(10):
        assert [200] * 10 == server.load(10, concurrency=2)
    server.wait_value("app_requests_total", 100, timeout=10)


def test_hup_keeps_counts_and_endpoint(start_gunicorn):
    """HUP replaces every worker; the counter keeps its value and the endpoint keeps serving."""
    server = start_gunicorn(args=WORKERS)
    server.load(60)
    server.wait_value("app_requests_total", 60)
    old = server.worker_pids()
    server.signal(signal.SIGHUP)
    wait_until(
        server.worker_pids,
        20,
        what=f"3 new workers, none of {sorted(old)}",
        until=lambda pids: len(pids) == 3 and not pids & old,
    )
    server.load(40)
    server.wait_value("app_requests_total", 100)
    slots = wait_until(lambda: gauge_slots(server), 10, what="3 gauges", until=lambda slots: len(slots) == 3)
    # New workers fork while the old ones still serve, so slots stay within 2 x workers (docs/metrics.md).
    assert all(0 <= int(slot) < 6 for slot in slots), slots
    assert server.worker_pids() == set(slots.values())
