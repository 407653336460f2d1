"""What the kernel says about a process, from ``/proc``: children, liveness, CPU time, memory, threads, fds, queues.

Runs in the test or bench process, reading other processes' files; any of them may exit between two reads, so a
reader of one process raises OSError then (``wait_until`` treats that as not yet), and :func:`children` skips it.
See proc(5) for the fields.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column


def stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: ``fields[0]`` is field 3 of proc(5) (state), ``[1]`` the ppid."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return stat_fields(pid)[0] not in "ZX"
    except (OSError, ValueError):
        return False


def children(ppid: int) -> set[int]:
    """Live (non-zombie) children of ``ppid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = stat_fields(int(entry))
            except (OSError, ValueError):
                continue  # exited while we looked
            if int(fields[1]) == ppid and fields[0] not in "ZX":
                found.add(int(entry))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads, ended ones included), in seconds (10 ms ticks)."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a mapping of its fields (``Threads``, ``VmRSS``, ...) to their text."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``RssAnon``, ...)."""
    return int(status(pid)[key].split()[0])


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among their sharers."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise ValueError(f"Pss not in /proc/{pid}/smaps_rollup")


def threads(pid: int) -> int:
    return int(status(pid)["Threads"])


def fds(pid: int) -> int:
    """Open file descriptors of the process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def accept_queue(port: int) -> int | None:
    """Connections waiting for ``accept()`` on the TCP listener of ``port`` (any address); None when none listens.

    For a listening socket ``/proc/net/tcp``'s rx_queue column is its accept queue length (proc(5)).
    """
    for fields in _listening_rows(port):
        return int(fields[4].split(":")[1], 16)
    return None


def _listening_rows(port: int) -> Iterator[list[str]]:
    """The ``/proc/net/tcp`` and ``tcp6`` rows, split in fields, of the sockets listening on ``port`` (any address).

    The package reads the same tables (``otel_gunicorn/_probes/port_holders.py``); the harness keeps its own reader
    because it never imports the package (see :mod:`harness`)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                yield fields


def listen_overflows() -> int:
    """TcpExt ListenOverflows: connections dropped because a listen queue was full (whole network namespace)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    header, values = [line.split() for line in lines if line.startswith("TcpExt:")][:2]
    return int(dict(zip(header, values)).get("ListenOverflows", 0))


def listeners(port: int) -> set[int]:
    """The pids holding a TCP listening socket on ``port`` (any address): the sockets' inodes from ``/proc/net/tcp``
    and ``tcp6``, matched against every process's ``/proc/<pid>/fd`` (processes that exit meanwhile are skipped)."""
    inodes = {f"socket:[{fields[9]}]" for fields in _listening_rows(port)}
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                holders.add(int(entry.name))
        except OSError:
            continue
    return holders
