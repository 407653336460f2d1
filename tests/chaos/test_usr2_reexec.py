"""USR2 re-exec under traffic: the new master takes over requests and, once the old one exits, the endpoint.

gunicorn (checked on 23-27) does not rename the pidfile to ``.oldbin`` as nginx does: the new master writes
``<pidfile>.2`` while the old one lives, and renames it to ``<pidfile>`` when it finds itself promoted (its parent
gone). The old master keeps ``<pidfile>`` until it exits and unlinks it.

gunicorn re-executes ``sys.executable`` with ``sys.argv``; under ``python -m gunicorn`` (how the harness starts it
by default) that is ``python .../gunicorn/__main__.py``, which puts the gunicorn package directory first on
``sys.path``, where ``gunicorn/http`` shadows the standard library's ``http`` and the new master dies at once ("No
module named 'http.server'"). Real deployments run the ``gunicorn`` script, so this test starts the master through
it (``script=True``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness import proc
from harness.process import stop_pid
from harness.waiting import wait_until
from tests.chaos.conftest import Scraper, Traffic, scrape

pytestmark = pytest.mark.chaos

WORKERS = 2
INTERVAL = 0.5
#: the new master must serve the endpoint this soon after the old master exited
HANDOVER_BOUND_S = 5.0
#: seconds both masters run side by side in the second variant
OVERLAP_S = float(os.environ.get("CHAOS_USR2_OVERLAP", "8"))


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(
    "overlap",
    # TERM the old master as soon as the new one runs its workers, or after both ran side by side for a while, as
    # an operator checking the new release first would (the new master's endpoint is refused the port meanwhile).
    [0.0, OVERLAP_S],
    ids=["term-at-once", f"overlap-{OVERLAP_S:g}s"],
)
def test_usr2_reexec(start_gunicorn, tmp_path, figures, overlap):
    pidfile = tmp_path / "gunicorn.pid"
    server = start_gunicorn(
        args=["-w", str(WORKERS), "--pid", str(pidfile)],
        env={"OTEL_GUNICORN_METRICS_INTERVAL": str(INTERVAL)},
        script=True,
    )
    old, port = server.pid, server.metrics_port
    assert old == read_pid(pidfile)
    new: int | None = None
    try:
        with (
            Traffic(server.port, max_requests=10_000, max_seconds=60, concurrency=2, delay=0.01) as traffic,
            Scraper(port) as scraper,
        ):
            wait_until(
                lambda: scrape(port), 10, what="the old master's endpoint", until=lambda r: r.master_pid == str(old)
            )
            usr2_at = time.monotonic()
            os.kill(old, signal.SIGUSR2)
            new = wait_until(lambda: read_pid(pidfile.with_name(pidfile.name + ".2")), 20, what="<pidfile>.2")
            assert new != old
            # The new master is up once its own workers run (they serve from the shared listeners).
            wait_until(
                lambda: proc.children(new),
                20,
                what=f"the new master's {WORKERS} workers",
                until=lambda workers: len(workers) == WORKERS,
            )
            new_ready = time.monotonic() - usr2_at
            time.sleep(overlap)  # both masters side by side for a fixed time, as the variant says
            assert proc.alive(old), "the old master died on USR2"
            assert proc.alive(new), "the new master died beside the old one"

            os.kill(old, signal.SIGTERM)
            server.process.wait(20)
            old_exited_at = time.monotonic()
            served_by_new = wait_until(
                lambda: scrape(port),
                HANDOVER_BOUND_S + 25,
                interval=0.05,
                what="the new master's endpoint",
                until=lambda r: r.ok and r.master_pid == str(new),
            )
            handover = served_by_new.at + served_by_new.latency - old_exited_at
            wait_until(
                lambda: read_pid(pidfile),
                10,
                what="the promoted master to own the pidfile",
                until=lambda pid: pid == new,
            )
            # traffic keeps flowing to the new master alone
            alone = traffic.ok
            wait_until(
                lambda: traffic.ok,
                10,
                what=f"20 requests served by the new master alone, {alone + 20} in all",
                until=lambda ok: ok >= alone + 20,
            )
            assert proc.alive(new), "the new master died"
            served = traffic.stop()
            status, body = server.get("/")
            assert 200 == status
            served_after = {int(r.master_pid) for r in scraper.records if r.ok and r.at > old_exited_at}

        log = server.log()
        figures.update(
            overlap_s=overlap,
            old_master=old,
            new_master=new,
            old_master_exit=server.process.returncode,
            new_master_ready_s=round(new_ready, 2),
            handover_s=round(handover, 3),
            requests_200=served,
            requests_failed=len(traffic.failures),
            request_failures=sorted(set(traffic.failures))[:5],
            endpoint_pids_after_old_exit=sorted(served_after),
            bind_retry_logged="cannot serve metrics" in log,
            **scraper.summary(),
        )
        assert 0 == server.process.returncode, "the old master did not exit cleanly"
        assert [] == traffic.failures
        assert handover <= HANDOVER_BOUND_S, f"the new master served the endpoint {handover:.1f} s after the old exit"
        assert {new} == served_after
    finally:
        second = pidfile.with_name(pidfile.name + ".2")
        for pid in {new, read_pid(second), read_pid(pidfile)} - {None, old}:
            stop_pid(pid)
