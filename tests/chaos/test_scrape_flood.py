"""A scraper that connects and never sends, plus 100 concurrent scrapes: all answered, signals still handled."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import statistics
import threading
import time

import pytest

from harness import proc
from harness.waiting import wait_until
from tests.chaos.conftest import Scraper, Traffic, scrape, settle

pytestmark = pytest.mark.chaos

WORKERS = 2
FLOOD = 100
#: a flood scrape may take this long (Prometheus' default scrape_timeout)
FLOOD_SCRAPE_TIMEOUT_S = 10.0
#: a normal scrape (the 100 ms scraper) during the flood must answer within this
NORMAL_SCRAPE_BOUND_S = 2.0
#: TTIN sent during the flood must yield a new worker this soon
TTIN_BOUND_S = 5.0


def test_stuck_scraper_and_scrape_flood(start_gunicorn, figures):
    server = start_gunicorn(workers=WORKERS)
    master, port = server.pid, server.metrics_port
    threads_before = settle(lambda: proc.threads(master), samples=3)

    stuck = socket.create_connection(("127.0.0.1", port), timeout=5)  # connects, never sends a byte
    try:
        with (
            Traffic(server.port, max_requests=5_000, max_seconds=60, concurrency=2, delay=0.01) as traffic,
            Scraper(port) as scraper,
        ):
            wait_until(
                lambda: (traffic.ok, len(scraper.records)),
                10,
                what="traffic and the scraper to be under way (requests served, scrapes made)",
                until=lambda counts: all(counts),
            )
            before = proc.children(master)
            gate = threading.Barrier(FLOOD + 2, timeout=10)

            def flood_one(_i: int):
                gate.wait()
                return scrape(port, timeout=FLOOD_SCRAPE_TIMEOUT_S)

            def normal_one():
                gate.wait()
                time.sleep(0.2)  # once the flood is under way
                return scrape(port, timeout=FLOOD_SCRAPE_TIMEOUT_S)

            with concurrent.futures.ThreadPoolExecutor(FLOOD + 1) as pool:
                futures = [pool.submit(flood_one, i) for i in range(FLOOD)]
                normal_future = pool.submit(normal_one)
                gate.wait()
                overflows_before = proc.listen_overflows()
                flood_started = time.monotonic()
                os.kill(master, signal.SIGTTIN)
                new_worker = wait_until(
                    lambda: proc.children(master) - before, TTIN_BOUND_S + 10, interval=0.05, what="the TTIN worker"
                )
                ttin_s = time.monotonic() - flood_started
                peak_threads = proc.threads(master)
                results = [f.result(timeout=FLOOD_SCRAPE_TIMEOUT_S + 5) for f in futures]
                dedicated = normal_future.result(timeout=FLOOD_SCRAPE_TIMEOUT_S + 5)
            flood_s = time.monotonic() - flood_started
            overflows = proc.listen_overflows() - overflows_before
            # every scrape of the 100 ms scraper that overlapped the flood, plus the one sent 0.2 s into it
            during = [
                r for r in scraper.records if r.at + r.latency >= flood_started and r.at <= flood_started + flood_s
            ]
            during.append(dedicated)
            # the application still serves after the flood
            after_flood = traffic.ok
            wait_until(
                lambda: traffic.ok,
                10,
                what=f"a request served after the flood, more than {after_flood}",
                until=lambda ok: ok > after_flood,
            )
            served = traffic.stop()
    finally:
        stuck.close()

    ok = [r for r in results if r.ok]
    latencies = sorted(r.latency for r in ok)
    normal = [r.latency for r in during if r.ok]
    figures.update(
        flood=FLOOD,
        flood_ok=len(ok),
        flood_errors=sorted({r.error for r in results if not r.ok})[:5],
        flood_seconds=round(flood_s, 2),
        flood_latency_median_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
        flood_latency_max_ms=round(latencies[-1] * 1000, 1) if latencies else None,
        # SYN retransmits happen after 1, 3, 7 s: these counts show how many scrapes waited for one
        flood_over_1s=len([x for x in latencies if x > 1]),
        flood_over_3s=len([x for x in latencies if x > 3]),
        flood_over_7s=len([x for x in latencies if x > 7]),
        listen_overflows_during_flood=overflows,
        normal_scrapes_during_flood=len(during),
        normal_scrape_max_ms_during_flood=round(max(normal) * 1000, 1) if normal else None,
        dedicated_normal_scrape_ms=round(dedicated.latency * 1000, 1) if dedicated.ok else dedicated.error,
        normal_scrape_misses_during_flood=len([r for r in during if not r.ok]),
        ttin_new_worker_s=round(ttin_s, 2),
        new_worker=sorted(new_worker),
        arbiter_threads_before=threads_before,
        arbiter_threads_peak=peak_threads,
        requests_200=served,
        requests_failed=len(traffic.failures),
        **scraper.summary(),
    )
    assert server.process.poll() is None, "the arbiter died"
    assert FLOOD == len(ok), f"{FLOOD - len(ok)} flood scrapes failed: {figures['flood_errors']}"
    assert [] == scraper.misses, scraper.summary()["miss_errors"]
    assert dedicated.ok, dedicated.error
    assert max(normal) < NORMAL_SCRAPE_BOUND_S, f"a normal scrape took {max(normal):.2f} s during the flood"
    assert ttin_s <= TTIN_BOUND_S, f"TTIN during the flood took {ttin_s:.1f} s to yield a worker"
    assert [] == traffic.failures
