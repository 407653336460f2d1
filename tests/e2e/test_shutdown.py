"""A graceful stop is bounded by OTEL_GUNICORN_SHUTDOWN_TIMEOUT however unreachable the collector; outages are logged
once, not once per retry."""

from __future__ import annotations

import datetime
import re
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from harness import net
from harness.waiting import wait_until

pytestmark = pytest.mark.e2e

#: what the issue asks for: SIGTERM → exit within 3 s, everything pointed at an unreachable collector
EXIT_LIMIT = 3.0
#: Slack for this 2-core machine, which other suites share. Of an exit, the telemetry takes the default budget (1 s,
#: its deadlines checked to the tenth by test_a_small_budget_is_honoured); the rest is the stop itself (gunicorn's
#: 0.1 s reaping poll, each process's interpreter teardown), as long with telemetry off: 1.1-1.2 s at a load average
#: of 1.5, 1.2-2.1 s at 6 to 9. With every signal unreachable, measured 2.1-2.9 s at 6 to 9 (before: 12-16 s).
LOADED_MACHINE_SLACK = 1.0

ALL_SIGNALS = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake into the backlog) and never answers:
    the worst collector there is, each request hangs until its timeout."""
    with socket.socket() as listener:
        listener.bind((net.LOOPBACK, 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def stop_and_time(server) -> float:
    """SIGTERM the master; seconds until it has exited (its exit status must be 0)."""
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert 0 == server.process.wait(30)
    return time.monotonic() - started


def start_with_unreachable_collector(start_gunicorn, port: int, protocol: str, **env: str):
    settings = {
        **ALL_SIGNALS,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{net.LOOPBACK}:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        **env,
    }
    server = start_gunicorn("logging_app:app", args=["-w", "2"], env=settings, wait_metrics=False)
    assert [200] * 20 == server.load(20)  # spans and log records queued in both workers
    return server


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("collector", ["refusing", "silent"])
def test_sigterm_exits_within_3_s_with_every_signal_pointed_at_an_unreachable_collector(
    start_gunicorn, blackhole, protocol, collector
):
    """Metrics, spans and log records all sent over OTLP to a closed port or to one that never answers: exit within
    3 s of SIGTERM (before: 12-16 s, gunicorn's --graceful-timeout 5 set by the harness cutting the workers' part
    short), and what was given up on is said."""
    port = net.free_port() if collector == "refusing" else blackhole
    server = start_with_unreachable_collector(start_gunicorn, port, protocol)

    elapsed = stop_and_time(server)

    assert elapsed <= EXIT_LIMIT + LOADED_MACHINE_SLACK, f"SIGTERM → exit took {elapsed:.2f} s\n{server.log()}"
    log = server.log()
    assert "WORKER TIMEOUT" not in log
    if collector == "silent":  # a refused connection may fail fast enough for the flush to finish in time
        assert "gave up on its spans" in log or "gave up on its log records" in log, log
        assert "had not delivered the last metrics" in log, log


def test_a_small_budget_is_honoured(start_gunicorn, blackhole):
    """OTEL_GUNICORN_SHUTDOWN_TIMEOUT=0.4 against a collector that never answers: each worker gives up 0.2 s into its
    exit, and the arbiter 0.2 s into its own, as the timestamps of their log lines show."""
    server = start_with_unreachable_collector(
        start_gunicorn, blackhole, "http/protobuf", OTEL_GUNICORN_SHUTDOWN_TIMEOUT="0.4"
    )

    stop_and_time(server)

    lines = server.log().splitlines()
    exiting = {pid: at(line) for line in lines if (pid := pid_in(line, r"Worker exiting \(pid: (\d+)\)"))}
    gave_up = {pid: at(line) for line in lines if (pid := pid_in(line, r"worker (\d+) gave up on its .* after 0.2 s"))}
    stopping = [at(line) for line in lines if "Shutting down: Master" in line]
    killed = [at(line) for line in lines if "had not delivered the last metrics after 0.2 s" in line]
    assert gave_up and exiting.keys() >= gave_up.keys() and 1 == len(stopping) == len(killed), "\n".join(lines)
    # Timestamps are taken in the processes themselves, so the bounds hold on a loaded machine too; the slack is
    # for the scheduler (a thread woken at its deadline) and, for the arbiter, the final snapshot it builds first.
    assert all(0.2 <= gave_up[pid] - exiting[pid] < 0.2 + 0.15 for pid in gave_up), "\n".join(lines)
    assert 0.2 <= killed[0] - stopping[0] < 0.2 + 0.3, "\n".join(lines)


def at(line: str) -> float:
    """The time a console-format log line was written (its leading ISO timestamp)."""
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()


def pid_in(line: str, pattern: str) -> int | None:
    match = re.search(pattern, line)
    return int(match.group(1)) if match else None


def test_an_outage_is_logged_once_per_worker_not_once_per_retry(start_gunicorn):
    """Spans and log records to a closed port: the SDK's per-attempt lines (``Transient error … retrying``) stay out
    of the log; each worker says once that its span export and its log export are failing."""
    env = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{net.LOOPBACK}:{net.free_port()}",
        # export every 100 ms and give up on a batch after 2 s (two attempts, 1 s apart): a few seconds, many failures
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    server = start_gunicorn("logging_app:app", args=["-w", "2"], env=env)
    for _ in range(4):
        assert [200] * 10 == server.load(10)
        time.sleep(1)
    wait_until(
        server.log,
        10,
        what="both workers' warnings, 'OTLP log record export failing' twice",
        until=lambda log: log.count("OTLP log record export failing") == 2,
    )

    server.stop()

    log = server.log()
    sdk_lines = [line for line in log.splitlines() if "Transient error" in line or "Failed to export" in line]
    assert all("otel_gunicorn: OTLP" in line for line in sdk_lines), "only quoted in our warnings"
    assert (2, 2) == (log.count("OTLP span export failing"), log.count("OTLP log record export failing")), log
    assert "Connection refused" in log or "ConnectionError" in log, "the warning should say why"
