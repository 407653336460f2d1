"""What the kernel says about another process: CPU time, memory, threads and open descriptors, from ``/proc``.

Runs in the arbiter, which reads its workers' files (and its own) without touching the workers: a worker stuck in a
request, or holding its GIL in a busy loop, is measured all the same. Each file has a pure parser (captured files
under ``tests/fixtures/proc/`` test them) split from the read; see proc(5) for the fields. Three files per process:
``stat`` (CPU times, threads, state, start time), ``statm`` (memory) and the ``fd`` directory (descriptors).

Memory comes from ``statm``, not from ``stat``'s ``rss``: the kernel keeps a process's page counts per CPU and
folds them in batches, and ``stat`` shows the folded count only, hundreds of KiB off on a small machine and up to
tens of MiB on a large one, while ``statm`` and ``status`` add the per-CPU parts in (Linux 6.16 and later; before,
all three showed the folded count). ``statm`` is the smaller of the two exact files.

Hazards: a process may exit between two reads, and its files then vanish (``OSError``) or, while it waits to be
reaped, show a zombie whose memory is gone (state ``Z``): :func:`read_process` returns ``None`` for a process it
cannot read at all, and leaves a field it cannot read (the descriptors of a process of another user) ``None``,
never 0. The reads are raw ``os.open``/``os.read``: no buffered file object, whose internal lock a fork on another
thread could copy held. Linux only: elsewhere every read fails and nothing is reported.
"""

from __future__ import annotations

import os
from typing import NamedTuple

#: clock ticks per second of ``/proc/<pid>/stat``'s CPU times, and bytes per page of its ``rss`` (fixed per boot)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: states of a process that has exited and waits to be reaped: no memory, no threads, its CPU times final
DEAD_STATES = frozenset({"Z", "X"})
#: a stat line is well under this (52 fields of at most 20 digits, and a command name of at most 64 bytes)
_STAT_BYTES = 4096


class ProcessStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` otel_gunicorn uses (proc(5) numbers them from 1)."""

    state: str
    """Field 3: ``R``, ``S``, ``D``, ``Z`` (exited, not reaped)..."""
    ppid: int
    """Field 4."""
    user_ticks: int
    """Field 14, utime: CPU time in user mode, of every thread (ended ones included), in clock ticks."""
    system_ticks: int
    """Field 15, stime: CPU time in kernel mode, likewise."""
    threads: int
    """Field 20, num_threads."""
    start_ticks: int
    """Field 22, starttime: clock ticks after boot when the process started (tells a reused pid apart)."""


def parse_stat(text: str) -> ProcessStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces and parentheses (a script named
    ``x) y (z.py``), so the fields are counted from after the *last* ``)``. ValueError on a line that is not one.
    """
    end = text.rfind(")")
    if end < 0:
        raise ValueError("not a /proc/<pid>/stat line: no ')' closes the command name")
    rest = text[end + 2 :].split()
    if len(rest) < 20:
        raise ValueError(f"not a /proc/<pid>/stat line: {len(rest) + 2} fields, at least 22 expected")
    return ProcessStat(
        state=rest[0],
        ppid=int(rest[1]),
        user_ticks=int(rest[11]),
        system_ticks=int(rest[12]),
        threads=int(rest[17]),
        start_ticks=int(rest[19]),
    )


class ProcessMemory(NamedTuple):
    """The fields of ``/proc/<pid>/statm`` otel_gunicorn uses, in pages."""

    virtual_pages: int
    """Field 1, size: the address space (``VmSize`` in ``status``)."""
    resident_pages: int
    """Field 2, resident: pages in RAM (``VmRSS`` in ``status``)."""


def parse_statm(text: str) -> ProcessMemory:
    """Parse one ``/proc/<pid>/statm`` line (seven numbers of pages); ValueError on a line that is not one."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"not a /proc/<pid>/statm line: {len(fields)} fields, 7 expected")
    return ProcessMemory(virtual_pages=int(fields[0]), resident_pages=int(fields[1]))


def count_descriptors(size: int, names: list[str] | None) -> int | None:
    """Open descriptors from ``/proc/<pid>/fd``: its ``st_size`` (Linux 6.2 and later count them there), else its
    listing (``names``: None when it could not be listed), whose entries are the descriptor numbers."""
    if size > 0:
        return size
    if names is None:
        return None
    return sum(1 for name in names if name.isdigit())


class ProcessReading(NamedTuple):
    """One process as read at one moment; a part that could not be read is ``None``."""

    stat: ProcessStat
    memory: ProcessMemory | None
    descriptors: int | None

    @property
    def dead(self) -> bool:
        """Exited, not yet reaped: only its CPU times still mean something."""
        return self.stat.state in DEAD_STATES

    @property
    def user_seconds(self) -> float:
        return self.stat.user_ticks / CLOCK_TICKS

    @property
    def system_seconds(self) -> float:
        return self.stat.system_ticks / CLOCK_TICKS

    @property
    def resident_bytes(self) -> int | None:
        return None if self.memory is None else self.memory.resident_pages * PAGE_SIZE

    @property
    def virtual_bytes(self) -> int | None:
        return None if self.memory is None else self.memory.virtual_pages * PAGE_SIZE


def read_text(path: str, limit: int = _STAT_BYTES) -> str:
    """A small ``/proc`` file in one ``read`` (the kernel generates it whole), without a buffered file object."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def read_descriptors(pid: int | str) -> int | None:
    """The process's open descriptors; None when ``/proc/<pid>/fd`` is not readable (another user's process).

    Before Linux 6.2 the directory is listed, and a process reading its own (``"self"``) counts the descriptor the
    listing holds open as well."""
    path = f"/proc/{pid}/fd"
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    names = None
    if size <= 0:
        try:
            names = os.listdir(path)
        except OSError:
            pass
    return count_descriptors(size, names)


def read_memory(pid: int | str) -> ProcessMemory | None:
    try:
        return parse_statm(read_text(f"/proc/{pid}/statm"))
    except (OSError, ValueError):
        return None


def read_process(pid: int | str) -> ProcessReading | None:
    """Read ``pid`` (or ``"self"``); None when it is gone or its stat is unreadable. A zombie's memory and
    descriptors are not read: it has none."""
    try:
        stat = parse_stat(read_text(f"/proc/{pid}/stat"))
    except (OSError, ValueError):
        return None
    if stat.state in DEAD_STATES:
        return ProcessReading(stat, None, None)
    return ProcessReading(stat, read_memory(pid), read_descriptors(pid))
