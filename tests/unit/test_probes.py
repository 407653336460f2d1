"""Unit tests for the listener-queue probes (otel_gunicorn._probes): parsers on captured replies, probes on loopback."""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.waiting import wait_until
from otel_gunicorn._probes import ListenerQueue, probe
from otel_gunicorn._probes.tcp import parse_tcp_info
from otel_gunicorn._probes.unix import (
    AF_UNIX,
    INET_DIAG_NOCOOKIE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    SOCK_DIAG_BY_FAMILY,
    TCP_LISTEN,
    UDIAG_SHOW_RQLEN,
    build_unix_diag_request,
    parse_unix_diag_reply,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "probes"
INODES = json.loads((FIXTURES / "inodes.json").read_text())
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="listener queues are read on Linux only")
fast = settings(max_examples=200, deadline=None)


def fixture(name: str) -> bytes:
    """The raw kernel reply captured by tests/fixtures/probes/capture.py."""
    return (FIXTURES / name).read_bytes()


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def settled(read: Callable[[], ListenerQueue | None], expected: ListenerQueue) -> ListenerQueue | None:
    """Read until ``expected`` shows up (AssertionError with the last reading after 2 s): a handshake's last ACK can
    land just after connect() returns."""
    return wait_until(read, 2.0, 0.01, f"the probe to read {expected}", until=lambda actual: actual == expected)


@pytest.fixture
def closing() -> Iterator[list[socket.socket]]:
    """A list whose sockets are closed after the test."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def tcp_listener(closing: list[socket.socket], family: socket.AddressFamily, host: str, clients: int) -> socket.socket:
    """A TCP listener after listen(7) with ``clients`` connections left unaccepted."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    closing.append(listener)
    listener.bind((host, 0))
    listener.listen(7)
    for _ in range(clients):
        closing.append(socket.create_connection(listener.getsockname()[:2]))
    return listener


def unix_listener(closing: list[socket.socket], path: Path, clients: int) -> socket.socket:
    """A unix listener after listen(7) with ``clients`` connections left unaccepted."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    closing.append(listener)
    listener.bind(str(path))
    listener.listen(7)
    for _ in range(clients):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        closing.append(client)
        client.connect(str(path))
    return listener


# parse_tcp_info


def test_parse_tcp_info_ipv4_listener() -> None:
    """A captured IPv4 listener after listen(5) and 3 unaccepted connects has queued 3, limit 5."""
    assert ListenerQueue(queued=3, limit=5) == parse_tcp_info(fixture("tcp4_listen.bin"))


def test_parse_tcp_info_ipv6_listener() -> None:
    """A captured IPv6 listener after listen(5) and 3 unaccepted connects has queued 3, limit 5."""
    assert ListenerQueue(queued=3, limit=5) == parse_tcp_info(fixture("tcp6_listen.bin"))


def test_parse_tcp_info_not_listening_is_none() -> None:
    """A captured connected socket's TCP_INFO is not a listener, so there is no queue."""
    assert None is parse_tcp_info(fixture("tcp4_established.bin"))


@pytest.mark.parametrize("length", [0, 1, 24, 31])
def test_parse_tcp_info_truncated_is_none(length: int) -> None:
    """A listener's buffer cut before the end of tcpi_sacked gives None."""
    assert None is parse_tcp_info(fixture("tcp4_listen.bin")[:length])


def test_parse_tcp_info_short_kernel_buffer_is_enough() -> None:
    """The 32 bytes up to tcpi_sacked are all the parser needs (older kernels return less than 104)."""
    assert ListenerQueue(queued=3, limit=5) == parse_tcp_info(fixture("tcp4_listen.bin")[:32])


@fast
@given(st.binary(max_size=128))
def test_parse_tcp_info_never_raises(buf: bytes) -> None:
    """Any byte string parses to None or a ListenerQueue."""
    assert isinstance(parse_tcp_info(buf), (ListenerQueue, type(None)))


# build_unix_diag_request


def test_build_unix_diag_request_layout() -> None:
    """The request is an nlmsghdr for SOCK_DIAG_BY_FAMILY followed by an exact-lookup unix_diag_req."""
    expected = (
        40, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 9, 0,
        AF_UNIX, 0, 0, 1 << TCP_LISTEN, 1234, UDIAG_SHOW_RQLEN, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE,
    )  # fmt: skip
    assert expected == struct.unpack("=IHHIIBBHIIIII", build_unix_diag_request(1234, 9))


# parse_unix_diag_reply


def test_parse_unix_diag_reply_listener() -> None:
    """A captured unix listener after listen(5) and 3 unaccepted connects has queued 3, limit 5."""
    inode = INODES["unix_listen.bin"]
    assert ListenerQueue(queued=3, limit=5) == parse_unix_diag_reply(fixture("unix_listen.bin"), inode)


def test_parse_unix_diag_reply_not_listening_is_none() -> None:
    """A captured connected unix socket is not a listener, so there is no queue."""
    inode = INODES["unix_established.bin"]
    assert None is parse_unix_diag_reply(fixture("unix_established.bin"), inode)


def test_parse_unix_diag_reply_other_inode_is_none() -> None:
    """A reply about another socket than the one asked for is ignored."""
    inode = INODES["unix_listen.bin"] + 1
    assert None is parse_unix_diag_reply(fixture("unix_listen.bin"), inode)


def test_parse_unix_diag_reply_error_raises_oserror() -> None:
    """A captured NLMSG_ERROR (inode of a closed socket) raises OSError with the kernel's errno, ENOENT."""
    with pytest.raises(OSError) as info:
        parse_unix_diag_reply(fixture("unix_enoent.bin"), INODES["unix_enoent.bin"])
    assert errno.ENOENT == info.value.errno


def test_parse_unix_diag_reply_done_is_none() -> None:
    """An NLMSG_DONE before any matching message means the socket was not found."""
    done = struct.pack("=IHHIIi", 20, NLMSG_DONE, 0, 1, 0, 0)
    assert None is parse_unix_diag_reply(done + fixture("unix_listen.bin"), INODES["unix_listen.bin"])


def test_parse_unix_diag_reply_after_other_message() -> None:
    """The matching message is found after a message about another socket."""
    buf = fixture("unix_established.bin") + fixture("unix_listen.bin")
    assert ListenerQueue(queued=3, limit=5) == parse_unix_diag_reply(buf, INODES["unix_listen.bin"])


def test_parse_unix_diag_reply_without_rqlen_is_none() -> None:
    """A listener message without the UNIX_DIAG_RQLEN attribute gives None."""
    reply = fixture("unix_listen.bin")
    without = struct.pack("=I", 32) + reply[4:32]  # nlmsghdr + unix_diag_msg only
    assert None is parse_unix_diag_reply(without, INODES["unix_listen.bin"])


@pytest.mark.parametrize("length", range(52))
def test_parse_unix_diag_reply_truncated_is_none(length: int) -> None:
    """Every proper prefix of a captured listener reply gives None."""
    assert None is parse_unix_diag_reply(fixture("unix_listen.bin")[:length], INODES["unix_listen.bin"])


@fast
@given(st.binary(max_size=128), st.integers(min_value=0, max_value=2**32 - 1))
def test_parse_unix_diag_reply_never_crashes(buf: bytes, inode: int) -> None:
    """Any byte string parses to None or a ListenerQueue, or raises OSError for an error message."""
    try:
        result = parse_unix_diag_reply(buf, inode)
    except OSError:
        return
    assert isinstance(result, (ListenerQueue, type(None)))


@fast
@given(st.binary(max_size=64))
def test_parse_unix_diag_reply_trailing_garbage_is_ignored(garbage: bytes) -> None:
    """Bytes after a complete matching message do not change the answer."""
    buf = fixture("unix_listen.bin") + garbage
    assert ListenerQueue(queued=3, limit=5) == parse_unix_diag_reply(buf, INODES["unix_listen.bin"])


# probe on live loopback sockets


@linux_only
def test_probe_tcp4_live(closing: list[socket.socket]) -> None:
    """An IPv4 listener after listen(7) with 4 unaccepted connects has queued 4, limit 7."""
    listener = tcp_listener(closing, socket.AF_INET, "127.0.0.1", 4)
    expected = ListenerQueue(queued=4, limit=7)
    assert expected == settled(lambda: probe(listener), expected)


@linux_only
@pytest.mark.skipif(not ipv6_loopback(), reason="::1 is not available")
def test_probe_tcp6_live(closing: list[socket.socket]) -> None:
    """An IPv6 listener after listen(7) with 4 unaccepted connects has queued 4, limit 7."""
    listener = tcp_listener(closing, socket.AF_INET6, "::1", 4)
    expected = ListenerQueue(queued=4, limit=7)
    assert expected == settled(lambda: probe(listener), expected)


@linux_only
def test_probe_tcp_idle_listener(closing: list[socket.socket]) -> None:
    """A listener nobody connected to reports an empty queue, not an absent one."""
    listener = tcp_listener(closing, socket.AF_INET, "127.0.0.1", 0)
    assert ListenerQueue(queued=0, limit=7) == probe(listener)


@linux_only
def test_probe_tcp_not_listening_is_none(closing: list[socket.socket]) -> None:
    """A bound TCP socket that never called listen() has no queue."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closing.append(sock)
    sock.bind(("127.0.0.1", 0))
    assert None is probe(sock)


@linux_only
def test_probe_unix_live(closing: list[socket.socket], tmp_path: Path) -> None:
    """A unix listener after listen(7) with 4 unaccepted connects has queued 4, limit 7."""
    listener = unix_listener(closing, tmp_path / "l.sock", 4)
    assert ListenerQueue(queued=4, limit=7) == probe(listener)


@linux_only
def test_probe_unix_not_listening_is_none(closing: list[socket.socket]) -> None:
    """A connected unix socket (one end of a socketpair) has no queue."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    closing.extend((left, right))
    assert None is probe(left)


@linux_only
def test_probe_unix_leaves_no_descriptor(closing: list[socket.socket], tmp_path: Path) -> None:
    """Probing a unix listener closes its netlink socket before returning."""
    listener = unix_listener(closing, tmp_path / "l.sock", 0)
    before = set(os.listdir("/proc/self/fd"))
    probe(listener)
    assert before == set(os.listdir("/proc/self/fd"))


@linux_only
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_probe_closed_socket_raises_oserror(family: socket.AddressFamily) -> None:
    """A closed socket makes the probe raise OSError (series absent) instead of reporting a value."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.close()
    with pytest.raises(OSError):
        probe(sock)


@linux_only
def test_probe_other_family_is_none() -> None:
    """A socket family without a probe gives None."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        assert None is probe(sock)


def test_probe_off_linux_is_none(monkeypatch: pytest.MonkeyPatch, closing: list[socket.socket]) -> None:
    """Off Linux the probe reports nothing rather than a fake 0."""
    listener = tcp_listener(closing, socket.AF_INET, "127.0.0.1", 0)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert None is probe(listener)
