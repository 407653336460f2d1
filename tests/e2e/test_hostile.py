"""Hostile input on the worker→arbiter channel: refused or dropped, counted, never fatal."""

from __future__ import annotations

import socket

import pytest

from harness.waiting import wait_until

pytestmark = pytest.mark.e2e


def channel_path(directory) -> str:
    [path] = list(directory.glob("otel-gunicorn-*/channel.sock"))
    return str(path)


def test_channel_lives_in_a_private_directory(start_gunicorn, tmp_path):
    """The channel socket sits in a directory only the server's user can enter (mode 0700)."""
    start_gunicorn(args=["-w", "1"], env={"OTEL_GUNICORN_CHANNEL_DIR": str(tmp_path)})
    [directory] = list(tmp_path.glob("otel-gunicorn-*"))
    assert 0o700 == directory.stat().st_mode & 0o777


def test_a_process_that_is_not_a_worker_is_refused(start_gunicorn, tmp_path):
    """A same-user process that is not one of this arbiter's workers is refused and counted; the server carries on."""
    server = start_gunicorn(args=["-w", "2"], env={"OTEL_GUNICORN_CHANNEL_DIR": str(tmp_path)})
    for _ in range(3):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as impostor:
            impostor.settimeout(2)
            impostor.connect(channel_path(tmp_path))
            try:
                impostor.sendall(b"OTGU\x01\x01\x00\x00\x00\x00\x00\x02{}")
                answer = impostor.recv(10)
            except (ConnectionResetError, BrokenPipeError):
                answer = b""
            assert b"" == answer  # the arbiter hung up
    server.wait_value("otel_gunicorn_channel_connections_total", 3, outcome="refused")
    assert [200] * 20 == server.load(20)
    server.wait_value("app_requests_total", 20)
    assert "is not a worker of this arbiter" in server.log()


def test_garbage_from_a_worker_is_dropped_and_counted(start_gunicorn, tmp_path):
    """Malformed, oversized and ill-shaped frames from a real worker are dropped and counted; counts stay exact."""
    server = start_gunicorn("hostile:app", args=["-w", "2"], env={"OTEL_GUNICORN_CHANNEL_DIR": str(tmp_path)})
    assert [200] * 10 == server.load(10)
    assert 200 == server.get("/garbage")[0]
    server.wait_value("otel_gunicorn_channel_reports_total", 4, outcome="rejected")
    assert [200] * 10 == server.load(10)
    server.wait_value("app_requests_total", 20)
    assert server.process.poll() is None
    log = server.log()
    assert 1 == log.count("dropped a bad report"), "rate-limited to one line per minute"


def test_a_flood_of_connections_does_not_stop_reporting(start_gunicorn, tmp_path):
    """500 connections opened and dropped at once: the arbiter refuses them all and keeps merging."""
    server = start_gunicorn(args=["-w", "2"], env={"OTEL_GUNICORN_CHANNEL_DIR": str(tmp_path)})
    path = channel_path(tmp_path)
    flood = []
    for _ in range(500):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except (BlockingIOError, ConnectionRefusedError, OSError):
            pass
        flood.append(sock)
    for sock in flood:
        sock.close()
    assert [200] * 30 == server.load(30)
    server.wait_value("app_requests_total", 30)
    refused = wait_until(lambda: server.value("otel_gunicorn_channel_connections_total", outcome="refused"), 10)
    assert refused > 0
