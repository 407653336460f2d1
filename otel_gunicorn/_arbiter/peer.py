"""Who is on the other end of a channel connection, as the kernel says (never as the payload claims).

``SO_PEERCRED`` gives the connecting process's pid and uid at ``connect()`` time; ``/proc/<pid>/stat`` gives its
parent. A connection is one of this server's workers when its uid is ours and its parent is this arbiter — or, for
gunicorn's dirty workers (gunicorn >= 25), when its parent is the dirty arbiter gunicorn recorded *and* that
process's parent is this arbiter (:func:`lineage`). Anything else is refused, including a process an HTTP worker
forked. Linux only: elsewhere :func:`peer_credentials` raises ``OSError`` and the connection is refused.
"""

from __future__ import annotations

import enum
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


class PeerKind(enum.Enum):
    """How an accepted peer descends from this arbiter."""

    CHILD = "child"
    """Forked by this arbiter: an HTTP worker, or the dirty arbiter."""
    DIRTY_WORKER = "dirty worker"
    """Forked by the dirty arbiter this arbiter forked."""


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


def lineage(
    stat: ProcStat | None, parent: ProcStat | None, arbiter_pid: int, dirty_arbiter_pid: int | None
) -> PeerKind | None:
    """How the process described by ``stat`` descends from this arbiter; None when it may not report.

    Args:
        stat: the peer's ``/proc/<pid>/stat`` (None: it is gone).
        parent: the stat of the peer's parent when that parent is the dirty arbiter (None otherwise, or gone).
        arbiter_pid: this arbiter's pid.
        dirty_arbiter_pid: the dirty arbiter's pid as gunicorn recorded it (None or 0: there is none).
    """
    if stat is None:
        return None
    if stat.ppid == arbiter_pid:
        return PeerKind.CHILD
    # The grandparent check keeps a stale record out: should gunicorn's dirty arbiter pid already belong to an
    # unrelated process, that process's children are not ours.
    if dirty_arbiter_pid and stat.ppid == dirty_arbiter_pid and parent is not None and parent.ppid == arbiter_pid:
        return PeerKind.DIRTY_WORKER
    return None


def identify(pid: int, arbiter_pid: int, dirty_arbiter_pid: int | None) -> PeerKind | None:
    """:func:`lineage` of the live process ``pid``, read from ``/proc``."""
    stat = read_proc_stat(pid)
    parent = None
    if stat is not None and dirty_arbiter_pid and stat.ppid == dirty_arbiter_pid:
        parent = read_proc_stat(dirty_arbiter_pid)
    return lineage(stat, parent, arbiter_pid, dirty_arbiter_pid)
