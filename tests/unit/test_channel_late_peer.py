"""A worker that connected just before it exited is still heard: its last report reaches the arbiter."""

from __future__ import annotations

import os
import socket
import threading

from harness.waiting import wait_until
from otel_gunicorn._arbiter.channel import ChannelServer
from otel_gunicorn._snapshot import Snapshot
from otel_gunicorn._wire import FrameKind, encode_frame


class Sink:
    """The arbiter runtime as the channel sees it, recording what arrives; ``reaped`` as the lifecycle knows it."""

    def __init__(self, reaped: set[int]) -> None:
        self.reaped = reaped
        self.reports: list[int] = []
        self.lock = threading.Lock()

    def connected(self, pid: int, dirty: bool = False) -> None: ...
    def dirty_arbiter_pid(self) -> int | None:
        return None

    def reaped_awaiting(self, pid: int) -> bool:
        return pid in self.reaped

    def report(self, pid: int, snapshot: Snapshot) -> None:
        with self.lock:
            self.reports.append(pid)

    def goodbye(self, pid: int, reason: str) -> None: ...
    def disconnected(self, pid: int, running: bool) -> None: ...
    def leaked(self) -> set[int]:
        return set()

    def tick(self) -> float:
        return 1.0


def a_worker_that_reports_and_exits(path: str) -> int:
    """Fork a child that connects, sends one (empty) report and exits; reap it. Its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                sock.sendall(encode_frame(FrameKind.SNAPSHOT, {"metrics": []}))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_reaped_workers_connection_from_the_backlog_is_accepted(tmp_path):
    """Accepted only after its worker was reaped (/proc has no such process), the connection still delivers."""
    sink = Sink(reaped=set())
    channel = ChannelServer(str(tmp_path), sink, 1 << 20)
    try:
        pid = a_worker_that_reports_and_exits(channel.path)  # before the channel accepts anything
        sink.reaped.add(pid)
        channel.start()
        reports = wait_until(lambda: list(sink.reports), 5, what="the late report", until=lambda r: r == [pid])
        assert [pid] == reports
    finally:
        channel.stop()


def test_a_stranger_that_is_gone_is_still_refused(tmp_path):
    """A gone process the lifecycle never reaped as a worker of ours is refused, as before."""
    sink = Sink(reaped=set())
    channel = ChannelServer(str(tmp_path), sink, 1 << 20)
    try:
        a_worker_that_reports_and_exits(channel.path)
        channel.start()
        refused = wait_until(lambda: channel.stats.connections_refused, 5, what="the refusal", until=lambda n: n == 1)
        assert (1, []) == (refused, sink.reports)
    finally:
        channel.stop()
