"""Accept queue of a TCP listener (IPv4 or IPv6), read with ``getsockopt(IPPROTO_TCP, TCP_INFO)``.

Runs in the arbiter (or in a worker under ``reuse_port``, where each worker owns its listener). One syscall on a
socket the process already holds; no threads, no state, so nothing to repair after fork.

For a socket in LISTEN the kernel reuses two ``struct tcp_info`` fields (``tcp_get_info`` in net/ipv4/tcp.c):
``tcpi_unacked`` is ``sk_ack_backlog`` (connections waiting for accept()) and ``tcpi_sacked`` is
``sk_max_ack_backlog`` (the effective backlog limit). Newer kernels also fill a few congestion fields for a
listener (snd_cwnd, reordering); none of them is about the queue.
"""

from __future__ import annotations

import socket
import struct

from otel_gunicorn._probes import ListenerQueue

TCP_LISTEN = 10
"""``tcpi_state`` of a listening socket (``TCP_LISTEN`` in include/net/tcp_states.h)."""

TCP_INFO_LEN = 104
"""Bytes requested: the stable prefix of ``struct tcp_info``; newer kernels fill at most this much, older ones less."""

# tcpi_unacked and tcpi_sacked, after 8 bytes of u8 fields and four u32 (rto, ato, snd_mss, rcv_mss).
_QUEUE = struct.Struct("=II")
_QUEUE_OFFSET = 24


def parse_tcp_info(buf: bytes) -> ListenerQueue | None:
    """Return the accept queue described by a ``TCP_INFO`` buffer, or ``None`` if not LISTEN or too short."""
    if len(buf) < _QUEUE_OFFSET + _QUEUE.size or buf[0] != TCP_LISTEN:
        return None
    queued, limit = _QUEUE.unpack_from(buf, _QUEUE_OFFSET)
    return ListenerQueue(queued, limit)


def read_tcp_info(sock: socket.socket) -> bytes:
    """Return the raw ``TCP_INFO`` buffer of ``sock``; raise :class:`OSError` if the syscall fails."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)


def probe_tcp(sock: socket.socket) -> ListenerQueue | None:
    """Return the accept queue of TCP socket ``sock``, ``None`` if it is not listening; raise :class:`OSError`."""
    return parse_tcp_info(read_tcp_info(sock))
