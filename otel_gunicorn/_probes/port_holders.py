"""Which processes hold a TCP listening socket on a port: for the message when the metrics port is taken.

Runs in the arbiter, once, when the Prometheus endpoint cannot bind. ``/proc/net/tcp`` and ``tcp6`` name each
listening socket's inode (:func:`listening_inodes`, pure); every process's ``/proc/<pid>/fd`` links name the sockets
it holds (:func:`holders`, the reads). Processes of other users cannot be read without privileges and are skipped,
as are those that exit meanwhile: the answer may be empty although the port is taken. Linux only: elsewhere
``/proc/net/tcp`` does not exist and :func:`holders` returns an empty set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["command_name", "holders", "listening_inodes"]

_LISTEN = "0A"  # TCP_LISTEN in the st column (include/net/tcp_states.h)
TABLES = ("net/tcp", "net/tcp6")


def listening_inodes(table: str, port: int) -> set[int]:
    """The inodes of the sockets listening on ``port`` (any address) in one ``/proc/net/tcp`` or ``tcp6`` text."""
    found = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(int(fields[9]))
    return found


def socket_inode(link: str) -> int | None:
    """The inode of an fd link's target ``socket:[INODE]``; None for anything else (files, pipes)."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


def holders(port: int, proc: str = "/proc") -> set[int]:
    """The pids holding a listening TCP socket on ``port`` among the processes this one may read (see the module
    docstring); empty when none is found."""
    inodes: set[int] = set()
    for table in TABLES:
        try:
            inodes |= listening_inodes(Path(proc, table).read_text(), port)
        except OSError:
            continue
    if not inodes:
        return set()
    found = set()
    for entry in _pids(proc):
        if any(socket_inode(link) in inodes for link in _fd_links(Path(proc, str(entry), "fd"))):
            found.add(entry)
    return found


def _pids(proc: str) -> Iterable[int]:
    try:
        names = os.listdir(proc)
    except OSError:
        return ()
    return [int(name) for name in names if name.isdigit()]


def _fd_links(fd_dir: Path) -> list[str]:
    links = []
    try:
        for fd in os.scandir(fd_dir):
            try:
                links.append(os.readlink(fd.path))
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return []  # another user's process, or gone
    return links


def command_name(pid: int, proc: str = "/proc") -> str:
    """The command name of ``pid`` (``/proc/<pid>/comm``), or ``?`` when it cannot be read."""
    try:
        return Path(proc, str(pid), "comm").read_text().strip() or "?"
    except OSError:
        return "?"
