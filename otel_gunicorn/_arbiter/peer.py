"""Who is on the other end of a channel connection, as the kernel says (never as the payload claims).

``SO_PEERCRED`` gives the connecting process's pid and uid at ``connect()`` time; ``/proc/<pid>/stat`` gives its
parent. A connection is one of this server's workers when its uid is ours and its parent is this arbiter.
Linux only: elsewhere :func:`peer_credentials` raises ``OSError`` and the connection is refused.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

_UCRED = struct.Struct("3i")


class Credentials(NamedTuple):
    pid: int
    uid: int
    gid: int


class ProcStat(NamedTuple):
    state: str
    ppid: int


def peer_credentials(sock: socket.socket) -> Credentials:
    """The peer's pid/uid/gid, checked by the kernel."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        raise OSError("SO_PEERCRED is not available on this platform")
    return Credentials(*_UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, so_peercred, _UCRED.size)))


def parse_proc_stat(text: str) -> ProcStat:
    """Parse ``/proc/<pid>/stat``: the command name may contain spaces and parentheses, so split after the last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    return ProcStat(state=rest[0], ppid=int(rest[1]))


def read_proc_stat(pid: int) -> ProcStat | None:
    """The process's state and parent, or None when it no longer exists."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return parse_proc_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    stat = read_proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")
