"""A user's own gunicorn hooks that forget to call ours: telemetry keeps working and the log names the hook."""

from __future__ import annotations

import signal
import textwrap

import pytest

from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

DURATION_COUNT = "http_server_request_duration_seconds_count"

#: a typical production gunicorn.conf.py: our hooks imported, then readiness and pool hooks of its own that do not
#: call ours
FORGETFUL_CONF = """
from otel_gunicorn.hooks import *  # noqa: F403

workers = 2

def when_ready(server):
    open({marks!r}, "a").write("when_ready\\n")

def post_worker_init(worker):
    open({marks!r}, "a").write("post_worker_init\\n")

def pre_request(worker, req):
    worker.log.debug("%s %s", req.method, req.path)
"""


def _warnings(log: str, hook: str) -> int:
    return log.count(f"your gunicorn hook {hook} does not call otel_gunicorn.hooks.{hook}")


def test_forgotten_hooks_still_run_ours_and_are_named_once(tmp_path, start_gunicorn):
    """when_ready, post_worker_init and pre_request replaced without calling ours: the endpoint serves, every
    request is counted by the app and by otel_gunicorn, the user's hooks ran, and one warning names each hook."""
    marks = tmp_path / "marks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(textwrap.dedent(FORGETFUL_CONF.format(marks=str(marks))))
    server = start_gunicorn(config=str(conf))
    assert [200] * 20 == server.load(20)
    server.wait_value("app_requests_total", 20)
    # the harness's readiness probes are requests too
    wait_until(
        lambda: server.value(DURATION_COUNT), 15, what="20 requests measured", until=lambda count: (count or 0) >= 20
    )
    # both workers report to the arbiter (each connects when it first reports)
    wait_until(
        lambda: server.value("otel_gunicorn_channel_connections_total", outcome="accepted"),
        15,
        what="both workers connected",
        until=lambda accepted: (accepted or 0) >= 2,
    )
    assert ["post_worker_init", "post_worker_init", "when_ready"] == sorted(marks.read_text().split())
    log = server.log()
    for hook in ("when_ready", "post_worker_init", "pre_request"):
        assert 1 == _warnings(log, hook), log
    # hooks the configuration did not replace, and post_request which it does not define, raise no warning
    for hook in ("post_fork", "post_request", "on_starting"):
        assert 0 == _warnings(log, hook)


def test_forgotten_hooks_stay_chained_after_hup(tmp_path, start_gunicorn):
    """A HUP re-reads the configuration file into a fresh configuration: the new workers report too."""
    marks = tmp_path / "marks"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(textwrap.dedent(FORGETFUL_CONF.format(marks=str(marks))))
    server = start_gunicorn(config=str(conf))
    before = server.worker_pids()
    server.signal(signal.SIGHUP)
    wait_until(
        server.worker_pids,
        20,
        what=f"2 new workers, none of {sorted(before)}",
        until=lambda pids: len(pids) == 2 and not pids & before,
    )
    assert [200] * 20 == server.load(20)
    server.wait_value("app_requests_total", 20)
    wait_until(
        lambda: server.value(DURATION_COUNT), 15, what="20 requests measured", until=lambda count: (count or 0) >= 20
    )


def test_on_starting_and_when_ready_both_forgotten(tmp_path, start_gunicorn, run_gunicorn):
    """Even with both arbiter start hooks replaced, our pre_fork catches up before the first fork: a bad setting
    still stops gunicorn before any worker boots, and a good configuration serves merged metrics."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        textwrap.dedent("""
        from otel_gunicorn.hooks import *  # noqa: F403

        def on_starting(server):
            pass

        def when_ready(server):
            pass
        """)
    )
    result = run_gunicorn(config=str(conf), env={"OTEL_GUNICORN_METRICS_INTERVAL": "soon"})
    assert 0 != result.returncode
    assert "OTEL_GUNICORN_METRICS_INTERVAL='soon' is not valid" in result.stderr
    assert "Booting worker" not in result.stderr

    server = start_gunicorn(config=str(conf))
    assert [200] * 5 == server.load(5)
    server.wait_value("app_requests_total", 5)
    log = server.log()
    assert 1 == _warnings(log, "on_starting") and 1 == _warnings(log, "when_ready"), log
