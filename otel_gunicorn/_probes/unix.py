"""Accept queue of a unix-socket listener, read over ``NETLINK_SOCK_DIAG`` (what ``ss -xl`` prints).

Why netlink: on AF_UNIX ``TCP_INFO`` and ``FIONREAD`` fail and ``/proc/net/unix`` has no queue column. A
``unix_diag`` request looked up by the socket's inode with ``UDIAG_SHOW_RQLEN`` works unprivileged and returns, for a
listener, ``udiag_rqueue`` = connections waiting for accept() and ``udiag_wqueue`` = the backlog limit
(``sk_diag_show_rqlen`` in net/unix/diag.c).

Runs in the arbiter (or in a worker under ``reuse_port``). Each query opens its own netlink socket and closes it before
returning, so there is no descriptor to leak into, or share with, a forked child: fork-safe by construction, at the
cost of one socket() per probe, which is negligible at scrape intervals.

Kernel behaviour relied on (checked on 6.18): without ``NLM_F_DUMP`` the request is an exact lookup by ``udiag_ino``
(``unix_diag_get_exact``) that ignores ``udiag_states`` and answers with one message, or one ``NLMSG_ERROR``
(ENOENT: no such socket; ESTALE: cookie mismatch, hence the "no cookie" value ``{~0, ~0}``, not zeros).
"""

from __future__ import annotations

import os
import socket
import struct

from otel_gunicorn._probes import ListenerQueue

# Linux ABI values, spelled out so the parser runs anywhere (the tests feed it captured replies).
AF_UNIX = 1
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
TCP_LISTEN = 10
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_RQLEN = 4
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
# nla_type carries two flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER) above the type proper.
_NLA_TYPE_MASK = 0x3FFF

# struct nlmsghdr {u32 len; u16 type; u16 flags; u32 seq; u32 pid;}
_NLMSGHDR = struct.Struct("=IHHII")
# struct unix_diag_req {u8 family; u8 protocol; u16 pad; u32 states; u32 ino; u32 show; u32 cookie[2];}
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")
# struct unix_diag_msg {u8 family; u8 type; u8 state; u8 pad; u32 ino; u32 cookie[2];}
_UNIX_DIAG_MSG = struct.Struct("=BBBBIII")
# struct nlattr {u16 len; u16 type;}
_NLATTR = struct.Struct("=HH")
# struct unix_diag_rqlen {u32 rqueue; u32 wqueue;}
_RQLEN = struct.Struct("=II")
_NLMSGERR = struct.Struct("=i")

_RECV_SIZE = 8192
# The kernel answers synchronously inside sendto(); the timeout only bounds a wait that should never happen.
_TIMEOUT = 1.0


def _align4(n: int) -> int:
    return (n + 3) & ~3


def build_unix_diag_request(inode: int, seq: int) -> bytes:
    """Return a netlink request for the listener with ``inode``, asking for its queue lengths (exact lookup)."""
    req = _UNIX_DIAG_REQ.pack(
        AF_UNIX, 0, 0, 1 << TCP_LISTEN, inode, UDIAG_SHOW_RQLEN, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE
    )
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, 0) + req


def parse_unix_diag_reply(buf: bytes, inode: int) -> ListenerQueue | None:
    """Return the accept queue of socket ``inode`` from a netlink reply, or ``None`` if absent, not LISTEN or truncated.

    Raises :class:`OSError` with the kernel's errno when the reply is an ``NLMSG_ERROR`` carrying an error.
    """
    offset = 0
    while offset + _NLMSGHDR.size <= len(buf):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
        if length < _NLMSGHDR.size or offset + length > len(buf):
            return None
        payload = buf[offset + _NLMSGHDR.size : offset + length]
        if msg_type == NLMSG_DONE:
            return None
        if msg_type == NLMSG_ERROR and len(payload) >= _NLMSGERR.size:
            (error,) = _NLMSGERR.unpack_from(payload)
            if error:
                raise OSError(-error, os.strerror(-error))
        elif msg_type == SOCK_DIAG_BY_FAMILY and len(payload) >= _UNIX_DIAG_MSG.size:
            family, _type, state, _pad, ino, _c0, _c1 = _UNIX_DIAG_MSG.unpack_from(payload)
            if family == AF_UNIX and ino == inode:
                return _parse_rqlen(payload[_UNIX_DIAG_MSG.size :]) if state == TCP_LISTEN else None
        offset += _align4(length)
    return None


def _parse_rqlen(attrs: bytes) -> ListenerQueue | None:
    offset = 0
    while offset + _NLATTR.size <= len(attrs):
        length, attr_type = _NLATTR.unpack_from(attrs, offset)
        if length < _NLATTR.size or offset + length > len(attrs):
            return None
        if attr_type & _NLA_TYPE_MASK == UNIX_DIAG_RQLEN and length >= _NLATTR.size + _RQLEN.size:
            queued, limit = _RQLEN.unpack_from(attrs, offset + _NLATTR.size)
            return ListenerQueue(queued, limit)
        offset += _align4(length)
    return None


def query_unix_diag(inode: int, seq: int = 1) -> bytes:
    """Send the request for ``inode`` and return the kernel's raw reply; raise :class:`OSError` on failure."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(_TIMEOUT)
        nl.sendto(build_unix_diag_request(inode, seq), (0, 0))  # (0, 0): the kernel, no multicast groups
        return nl.recv(_RECV_SIZE)


def probe_unix(sock: socket.socket) -> ListenerQueue | None:
    """Return the accept queue of unix socket ``sock``, ``None`` if it is not listening; raise :class:`OSError`."""
    inode = os.fstat(sock.fileno()).st_ino
    return parse_unix_diag_reply(query_unix_diag(inode), inode)
