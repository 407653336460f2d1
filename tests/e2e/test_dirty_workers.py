"""gunicorn's dirty workers (gunicorn >= 25) from outside: their app metrics merged exactly, the pool's own metrics.

A real gunicorn serves ``tests/e2e/apps/dirty_calls.py`` with two dirty workers; every HTTP request makes one dirty
call. The dirty arbiter is found from gunicorn's log, its dirty workers from ``/proc``.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import gunicorn
import pytest

from harness import proc
from harness.prometheus import promtool_check
from harness.waiting import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(gunicorn.version_info < (25,), reason="dirty workers need gunicorn >= 25"),
]

APP = "dirty_calls:app"
DIRTY = ["-w", "2", "--dirty-app", "dirty_calls:CountingApp", "--dirty-workers", "2"]
KILLED = {"gunicorn_dirty_worker_exit_reason": "killed"}
HOLD = {"gunicorn_dirty_app": "dirty_calls:CountingApp", "gunicorn_dirty_action": "hold"}


def dirty_arbiter(server) -> int:
    """The dirty arbiter's pid, as gunicorn logged it."""
    found = re.findall(r"Spawned dirty arbiter \(pid: (\d+)\)", server.log())
    assert found, "gunicorn logged no dirty arbiter"
    return int(found[-1])


def dirty_workers(server) -> set[int]:
    return proc.children(dirty_arbiter(server))


def start(start_gunicorn, *, args=(), env=None):
    """A server with two dirty workers, both of which have reported (both counted by the arbiter)."""
    server = start_gunicorn(APP, args=[*DIRTY, *args], env=env)
    wait_until(
        lambda: server.value("gunicorn_dirty_workers"),
        15,
        what="two dirty workers reporting",
        until=lambda workers: workers == 2,
    )
    return server


def dirty_slots(server) -> dict[str, int]:
    """dirty slot label -> dirty worker pid, from the dirty app's observable gauge."""
    return {s.labels["gunicorn_dirty_worker_slot"]: int(s.value) for s in server.samples("app_dirty_pid")}


class Scraper:
    """Scrapes one value every 100 ms on a thread, as a busy Prometheus would, while the test does something."""

    def __init__(self, server, name: str) -> None:
        self.seen: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server, name))

    def _run(self, server, name: str) -> None:
        while not self._stop.is_set():
            value = server.value(name)
            if value is not None:
                self.seen.append(value)
            time.sleep(0.1)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_dirty_counter_stays_exact_across_a_killed_dirty_worker(start_gunicorn):
    """40 calls read 40; after kill -9 of a dirty worker and 40 more, exactly 80, never lower at any scrape."""
    server = start(start_gunicorn)
    assert [200] * 40 == server.load(40, path="/count")
    assert 40 == server.wait_value("app_dirty_calls_total", 40)
    before = dirty_workers(server)
    victim = sorted(before)[0]

    with Scraper(server, "app_dirty_calls_total") as scraper:
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: server.value("gunicorn_dirty_worker_exits_total", **KILLED),
            10,
            what="the exit",
            until=lambda killed: killed == 1,
        )
        replaced = wait_until(
            lambda: dirty_workers(server) - before, 15, what="a replacement", until=lambda new: len(new) == 1
        )
        wait_until(
            lambda: server.value("gunicorn_dirty_workers"),
            15,
            what="the replacement reporting",
            until=lambda workers: workers == 2,
        )
        assert [200] * 40 == server.load(40, path="/count")
        server.wait_value("app_dirty_calls_total", 80)
        wait_until(lambda: scraper.seen[-1:], 5, what="the scraper to see 80", until=lambda last: last == [80])

    assert replaced
    assert scraper.seen[0] == 40
    assert all(a <= b for a, b in zip(scraper.seen, scraper.seen[1:])), f"the counter decreased: {scraper.seen}"
    assert 80 == scraper.seen[-1]


def test_pool_metrics_while_a_call_is_held(start_gunicorn):
    """A held call shows one busy dirty worker and one call in flight, against a limit of 2; then all is idle."""
    server = start(start_gunicorn)
    held = threading.Thread(target=server.get, args=("/hold?3",))
    held.start()
    try:
        busy = wait_until(
            server.scrape,
            5,
            what="a busy dirty worker",
            until=lambda scrape: scrape.value("gunicorn_dirty_workers", gunicorn_dirty_worker_state="busy") == 1,
        )
    finally:
        held.join()
    assert 2 == busy.value("gunicorn_dirty_worker_limit")
    assert 1 == busy.value("gunicorn_dirty_workers", gunicorn_dirty_worker_state="idle")
    assert 1 == busy.value("gunicorn_dirty_calls_active", gunicorn_dirty_action="hold")

    wait_until(
        lambda: server.value("gunicorn_dirty_calls_active"),
        5,
        what="no call in flight",
        until=lambda active: active == 0,
    )
    after = server.scrape()
    assert 1 == after.value("gunicorn_dirty_call_duration_seconds_count", **HOLD)
    assert 3.0 <= after.value("gunicorn_dirty_call_duration_seconds_sum", **HOLD) < 4.0
    assert 2 == after.value("gunicorn_dirty_workers", gunicorn_dirty_worker_state="idle")
    assert {"timeout": 0, "killed": 0, "error": 0, "normal": 0} == exits(after)


def exits(exposition) -> dict[str, float]:
    return {
        s.labels["gunicorn_dirty_worker_exit_reason"]: s.value
        for s in exposition.samples("gunicorn_dirty_worker_exits_total")
    }


def test_dirty_gauges_have_their_own_slots(start_gunicorn):
    """A dirty app's gauge has one series per dirty worker, labelled 0 and 1 with the dirty slot, never the HTTP one."""
    server = start(start_gunicorn)
    slots = wait_until(lambda: dirty_slots(server), 10, what="two dirty gauges", until=lambda slots: len(slots) == 2)
    assert {"0", "1"} == set(slots)
    assert dirty_workers(server) == set(slots.values())
    assert all("gunicorn_worker_slot" not in s.labels for s in server.samples("app_dirty_pid"))


def test_promtool_accepts_the_exposition_with_a_dirty_pool(start_gunicorn):
    """promtool check metrics finds nothing wrong with a scrape carrying dirty app and dirty pool metrics."""
    server = start(start_gunicorn)
    assert [200] * 5 == server.load(5, path="/count")
    server.wait_value("app_dirty_calls_total", 5)
    result = promtool_check(server.scrape_text())
    assert (0, "") == (result.returncode, result.stdout + result.stderr)


def test_graceful_exit_sends_the_final_report(start_gunicorn):
    """With reports every 60 s, TERM to the dirty workers still brings every call in, each exit counted normal."""
    server = start_gunicorn(APP, args=DIRTY, env={"OTEL_GUNICORN_METRICS_INTERVAL": "60"})
    # a dirty worker reports once as it boots, so that it is known (connected) long before it exits
    wait_until(
        lambda: server.value("gunicorn_dirty_workers"),
        10,
        what="two dirty workers' first reports",
        until=lambda workers: workers == 2,
    )
    assert [200] * 20 == server.load(20, path="/count")
    first = dirty_workers(server)
    for pid in first:
        os.kill(pid, signal.SIGTERM)
    assert 20 == server.wait_value("app_dirty_calls_total", 20, timeout=10)
    wait_until(lambda: exits(server.scrape()), 10, what="two normal exits", until=lambda seen: seen.get("normal") == 2)
    wait_until(lambda: dirty_workers(server) - first, 15, what="two replacements", until=lambda new: len(new) == 2)


def test_an_aborted_dirty_worker_exits_on_timeout(start_gunicorn):
    """SIGABRT, which the dirty arbiter sends a dirty worker that missed its heartbeat, counts as a timeout exit."""
    server = start(start_gunicorn)
    assert [200] * 10 == server.load(10, path="/count")
    server.wait_value("app_dirty_calls_total", 10)
    os.kill(sorted(dirty_workers(server))[0], signal.SIGABRT)
    wait_until(lambda: exits(server.scrape()), 10, what="a timeout exit", until=lambda seen: seen.get("timeout") == 1)
    assert (10, {"timeout": 1, "killed": 0, "error": 0, "normal": 0}) == (
        server.value("app_dirty_calls_total"),
        exits(server.scrape()),
    )


def test_a_call_past_dirty_timeout_is_counted(start_gunicorn):
    """A call longer than --dirty-timeout fails for its caller and counts as a timeout, by app and action."""
    server = start(start_gunicorn, args=["--dirty-timeout", "1"])
    assert 500 == server.get("/hold?2.5")[0]
    server.wait_value("gunicorn_dirty_call_timeouts_total", 1, **HOLD)
    assert 1 == server.value("gunicorn_dirty_call_duration_seconds_count", error_type="timeout", **HOLD)


def test_a_child_of_an_http_worker_is_refused(start_gunicorn):
    """A process an HTTP worker forked may not report, even to the path dirty workers use: refused, its claim unseen."""
    server = start(start_gunicorn)
    refused = {"outcome": "refused"}
    assert 0 == server.value("otel_gunicorn_channel_connections_total", **refused)
    assert 200 == server.get("/impostor")[0]
    server.wait_value("otel_gunicorn_channel_connections_total", 1, **refused)
    assert None is server.value("app_dirty_calls_total")


def socket_inodes(pid: int) -> set[str]:
    """``socket:[inode]`` of every socket the process holds open."""
    links = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed while we looked
    return {link for link in links if link.startswith("socket:")}


def listener_inode(port: int) -> str:
    """``socket:[inode]`` of the TCP listener on ``port`` (``/proc/net/tcp``: local address, state 0A, inode)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            return f"socket:[{fields[9]}]"
    raise AssertionError(f"nothing listens on port {port}")


def test_a_respawned_dirty_arbiter_holds_no_arbiter_socket_and_reports(start_gunicorn):
    """kill -9 of the dirty arbiter: gunicorn forks a new one (through the at-fork handler, which closes the arbiter's
    sockets in it); it reports its limit, its new workers report, the orphaned old ones count as killed, totals stay."""
    server = start(start_gunicorn)
    assert [200] * 10 == server.load(10, path="/count")
    server.wait_value("app_dirty_calls_total", 10)
    first, orphans = dirty_arbiter(server), dirty_workers(server)
    try:
        os.kill(first, signal.SIGKILL)
        second = wait_until(
            lambda: dirty_arbiter(server), 15, what=f"a new one, not {first}", until=lambda pid: pid != first
        )
        wait_until(lambda: proc.children(second), 15, what="its two dirty workers", until=lambda pids: len(pids) == 2)
        wait_until(
            lambda: exits(server.scrape()),
            10,
            what="the orphans counted as gone",
            until=lambda seen: seen.get("killed") == 2,
        )
        wait_until(
            lambda: server.value("gunicorn_dirty_workers"),
            10,
            what="the new dirty workers reporting",
            until=lambda workers: workers == 2,
        )
        after = server.scrape()
        held = socket_inodes(second)
    finally:
        for pid in orphans:  # gunicorn leaves a dead dirty arbiter's workers running
            if proc.alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert (2, 10) == (after.value("gunicorn_dirty_worker_limit"), after.value("app_dirty_calls_total"))
    endpoint = listener_inode(server.metrics_port)
    assert (True, False) == (endpoint in socket_inodes(server.pid), endpoint in held)


def test_without_dirty_apps_nothing_changes(start_gunicorn):
    """A server without dirty_apps exports no dirty metric at all."""
    server = start_gunicorn(args=["-w", "2"])
    server.load(5)
    server.wait_value("app_requests_total", 5)
    assert "gunicorn_dirty" not in server.scrape_text()
