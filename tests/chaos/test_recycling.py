"""--max-requests 1: every request recycles a worker. Memory, scrape time and slot labels must stay flat."""

from __future__ import annotations

import os
import time

import pytest

from harness import proc
from harness.waiting import wait_until
from tests.chaos.conftest import Scraper, Traffic, median_scrape_ms, requests_total, settle

pytestmark = pytest.mark.chaos

#: requests (= worker recycles), the figure issue 6 asks for. Measured on the 2-core machine: 1000 recycles take
#: about 65-75 s when quiet; CHAOS_RECYCLES lowers it for a quick local run.
RECYCLES = int(os.environ.get("CHAOS_RECYCLES", "1000"))
WARM_UP = 50
#: hard bound on the recycling phase (seconds); generous: 0.4 s per recycle, at least 120 s
BOUND_S = max(120.0, 0.4 * RECYCLES)
INTERVAL = 0.5
RSS_GROWTH_BOUND_KIB = 5 * 1024
ALLOWED_SLOTS = {"0", "1", "2", "3"}


def scrape_bound_ms(start_ms: float) -> float:
    return 2 * start_ms + 5


def test_thousand_recycles(start_gunicorn, figures):
    server = start_gunicorn(
        args=["-w", "2", "--max-requests", "1"], env={"OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL)}
    )
    master, port = server.pid, server.metrics_port
    figures.update(recycles=RECYCLES, warm_up=WARM_UP)

    with Scraper(port) as scraper:
        with Traffic(server.port, max_requests=WARM_UP, max_seconds=60, concurrency=2, delay=0) as warm:
            warm.join(60)
        assert (WARM_UP, []) == (warm.ok, warm.failures)
        server.wait_value("app_requests_total", WARM_UP, timeout=10)
        scraper.pause()
        rss_start = settle(lambda: proc.rss_kib(master), samples=3)
        scrape_start_ms = median_scrape_ms(port)
        scraper.resume()

        started = time.monotonic()
        with Traffic(server.port, max_requests=RECYCLES - WARM_UP, max_seconds=BOUND_S, concurrency=2, delay=0) as main:
            main.join(BOUND_S + 10)
        elapsed = time.monotonic() - started
        ok, failures = WARM_UP + main.ok, main.failures
        wait_until(
            lambda: requests_total(port), 15, what=f"app_requests_total == {ok}", until=lambda total: total == ok
        )
        scraper.pause()
        rss_end = settle(lambda: proc.rss_kib(master), samples=3)
        scrape_end_ms = median_scrape_ms(port)
        final = requests_total(port)

    slots_seen = sorted({slot for record in scraper.records for slot in record.slots})
    figures.update(
        requests_200=ok,
        requests_failed=len(failures),
        request_failures=sorted(set(failures))[:5],
        recycle_seconds=round(elapsed, 1),
        ms_per_recycle=round(1000 * elapsed / max(1, RECYCLES - WARM_UP), 1),
        worker_boots=server.booted(),
        final_counter=final,
        rss_start_kib=rss_start,
        rss_end_kib=rss_end,
        rss_growth_kib=rss_end - rss_start,
        scrape_median_start_ms=scrape_start_ms,
        scrape_median_end_ms=scrape_end_ms,
        slots_seen=slots_seen,
        **scraper.summary(),
    )
    assert server.process.poll() is None, "the arbiter died"
    assert [] == failures
    assert RECYCLES == final, f"counter {final} != {RECYCLES}: graceful exits must flush every count"
    assert [] == scraper.misses, scraper.summary()["miss_errors"]
    assert [] == scraper.decreases()
    assert set(slots_seen) <= ALLOWED_SLOTS, slots_seen
    assert rss_end - rss_start <= RSS_GROWTH_BOUND_KIB, f"arbiter RSS grew {rss_end - rss_start} KiB"
    assert scrape_end_ms <= scrape_bound_ms(scrape_start_ms), (scrape_start_ms, scrape_end_ms)
