"""HUP, TTIN, TTOU and kill -9 in a random mix while traffic flows and the endpoint is scraped every 100 ms."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import pytest

from harness import proc
from harness.waiting import wait_until
from tests.chaos.conftest import Scraper, Traffic, requests_total, scrape, settle, wait_counter_settled

pytestmark = pytest.mark.chaos

WORKERS = 3
INTERVAL = 0.5
ROUNDS = 12
SEED = int(os.environ.get("CHAOS_SEED", "20240606"))
#: the arbiter may hold this many more fds at the end than after warm-up (the OTLP pusher is off here)
FD_GROWTH_BOUND = 2
THREAD_GROWTH_BOUND = 0


def gauge_slots(metrics_port: int) -> set[str]:
    """Slots of the app_worker_pid series (one per live, reporting worker)."""
    result = scrape(metrics_port)
    return set(result.slots) if result.ok else set()


def handled_count(server, sig: signal.Signals) -> int:
    """How many times the master logged handling ``sig`` (gunicorn logs every signal but CHLD as it handles it)."""
    return server.log().count(f"Handling signal: {sig.name[3:].lower()}")


def plan(rng: random.Random) -> list[str]:
    """ROUNDS actions, each kind at least once and at least three kill -9."""
    actions = ["HUP", "TTIN", "TTOU", "KILL", "KILL", "KILL"]
    actions += [rng.choice(["HUP", "TTIN", "TTOU", "KILL"]) for _ in range(ROUNDS - len(actions))]
    rng.shuffle(actions)
    return actions


def test_signal_storm(start_gunicorn, figures):
    rng = random.Random(SEED)
    server = start_gunicorn(args=["-w", str(WORKERS)], env={"OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL)})
    master = server.pid
    port = server.metrics_port
    figures.update(seed=SEED, workers=WORKERS, interval_s=INTERVAL)

    def workers_reporting() -> tuple[int, int]:
        """(live workers, workers whose pid gauge is scraped)"""
        return len(proc.children(master)), len(gauge_slots(port))

    def all_reporting(seen: tuple[int, int]) -> bool:
        return seen == (WORKERS, WORKERS)

    with Traffic(server.port, max_requests=20_000, max_seconds=90, concurrency=2) as traffic, Scraper(port) as scraper:
        wait_until(
            lambda: requests_total(port),
            10,
            what="the first requests to be reported",
            until=lambda total: (total or 0) > 0,
        )
        wait_until(workers_reporting, 10, what=f"{WORKERS} workers reporting", until=all_reporting)
        scraper.pause()
        warm_threads, warm_fds = settle(lambda: proc.threads(master)), settle(lambda: proc.fds(master))
        scraper.resume()

        target = WORKERS
        done: list[str] = []
        killed_at: list[tuple[int, float]] = []
        for action in plan(rng):
            if action == "HUP":
                os.kill(master, signal.SIGHUP)
                target = WORKERS  # HUP re-reads the configuration: back to -w
            elif action == "TTIN":
                os.kill(master, signal.SIGTTIN)
                target += 1
            elif action == "TTOU" and target > 1:
                os.kill(master, signal.SIGTTOU)
                target -= 1
            elif action == "KILL":
                # Everything served so far must be reported first: then a SIGKILL loses nothing, and the final
                # total can be asserted exactly.
                served = traffic.pause()
                wait_until(
                    lambda: requests_total(port),
                    2 * INTERVAL + 5,
                    what=f"app_requests_total == {served} before kill -9",
                    until=lambda total, served=served: total == served,
                )
                candidates = sorted(proc.children(master))
                if candidates:
                    victim = rng.choice(candidates)
                    os.kill(victim, signal.SIGKILL)
                    killed_at.append((victim, served))
                traffic.resume()
            done.append(action)
            time.sleep(rng.uniform(0.3, 0.7))  # pacing: the storm's rhythm, random so it hits every phase

        # Back to the configured worker count, so threads and fds compare like with like; one signal at a time, each
        # handled before the next (gunicorn queues at most 5).
        while target != WORKERS:
            sig = signal.SIGTTIN if target < WORKERS else signal.SIGTTOU
            handled = handled_count(server, sig)
            os.kill(master, sig)
            wait_until(
                lambda sig=sig: handled_count(server, sig),
                10,
                what=f"{sig.name} handled, more than {handled} times",
                until=lambda count, n=handled: count > n,
            )
            target += 1 if target < WORKERS else -1

        served = traffic.stop()
        final = wait_counter_settled(port, INTERVAL)
        wait_until(workers_reporting, 20, what=f"{WORKERS} workers reporting after the storm", until=all_reporting)
        scraper.pause()
        # The arbiter lets go of replaced workers' connections and threads soon after: wait for that (a leak never
        # comes back within bounds, and the asserts below show the numbers).
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: (proc.threads(master), proc.fds(master)),
                10,
                what=f"the arbiter's threads and fds to come back near {warm_threads} and {warm_fds}",
                until=lambda seen: (
                    seen[0] - warm_threads <= THREAD_GROWTH_BOUND and seen[1] - warm_fds <= FD_GROWTH_BOUND
                ),
            )
        end_threads, end_fds = settle(lambda: proc.threads(master)), settle(lambda: proc.fds(master))
        final = requests_total(port)

    figures.update(
        actions=done,
        kills=len(killed_at),
        requests_200=served,
        requests_failed=len(traffic.failures),
        request_failures=sorted(set(traffic.failures))[:5],
        final_counter=final,
        lost_to_sigkill_expected=0,
        threads_warm=warm_threads,
        threads_end=end_threads,
        thread_growth=end_threads - warm_threads,
        fds_warm=warm_fds,
        fds_end=end_fds,
        fd_growth=end_fds - warm_fds,
        worker_boots=server.booted(),
        **scraper.summary(),
    )
    assert server.process.poll() is None, "the arbiter died"
    assert [] == scraper.misses, f"{len(scraper.misses)} scrapes failed: {scraper.summary()['miss_errors']}"
    assert [] == scraper.decreases(), f"app_requests_total decreased: {scraper.decreases()[:5]}"
    # Before each kill -9 everything served had been reported, so nothing may be missing: exact.
    assert final == served, f"counter {final} != {served} requests answered 200 ({len(traffic.failures)} failed)"
    assert end_threads - warm_threads <= THREAD_GROWTH_BOUND, (warm_threads, end_threads)
    assert end_fds - warm_fds <= FD_GROWTH_BOUND, (warm_fds, end_fds)
