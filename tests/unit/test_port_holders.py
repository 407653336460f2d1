"""Who holds a TCP listening socket on a port: the pure reading of ``/proc/net/tcp`` (captured from a real kernel in
``tests/fixtures/proc/port_holders``: a listener on 127.0.0.1:57835 with one connection, one on [::1]:57835) and
the fd scan over a fake ``/proc`` tree."""

from __future__ import annotations

import os
from pathlib import Path

from otel_gunicorn._probes import port_holders

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proc" / "port_holders"
PORT = 57835


def fake_proc(root: Path, fds: dict[int, list[str]]) -> str:
    """A ``/proc`` with the captured tables and, per pid, fd links to ``fds``' targets; its path."""
    (root / "net").mkdir(parents=True)
    for table in ("tcp", "tcp6"):
        (root / "net" / table).write_text((FIXTURES / table).read_text())
    for pid, targets in fds.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(f"proc{pid}\n")
        for fd, target in enumerate(targets):
            os.symlink(target, root / str(pid) / "fd" / str(fd))
    return str(root)


def test_only_listening_sockets_of_the_port_are_found() -> None:
    """The listener's inode, not the established connections' on the same port; IPv6 in its own table."""
    tcp, tcp6 = ((FIXTURES / table).read_text() for table in ("tcp", "tcp6"))
    assert ({301434}, {301435}, set()) == (
        port_holders.listening_inodes(tcp, PORT),
        port_holders.listening_inodes(tcp6, PORT),
        port_holders.listening_inodes(tcp, PORT + 1),
    )


def test_socket_inode_reads_socket_links_only() -> None:
    assert (301434, None, None) == tuple(
        port_holders.socket_inode(link) for link in ("socket:[301434]", "pipe:[301434]", "/dev/null")
    )


def test_holders_are_the_processes_with_a_listening_socket_of_the_port(tmp_path: Path) -> None:
    """Two processes share the IPv4 listener (a fork), one holds the IPv6 one, one only a connection: three pids."""
    proc = fake_proc(
        tmp_path,
        {
            10: ["/dev/null", "socket:[301434]"],
            11: ["socket:[301434]"],
            12: ["socket:[301435]"],
            13: ["socket:[301436]", "pipe:[5]"],
        },
    )
    assert ({10, 11, 12}, set()) == (port_holders.holders(PORT, proc), port_holders.holders(PORT + 1, proc))


def test_without_proc_nothing_is_found(tmp_path: Path) -> None:
    """No ``/proc`` (not Linux): an empty answer, and ``?`` for a command name."""
    assert (set(), "?") == (port_holders.holders(PORT, str(tmp_path)), port_holders.command_name(1, str(tmp_path)))


def test_command_name_is_the_comm_file(tmp_path: Path) -> None:
    assert "proc10" == port_holders.command_name(10, fake_proc(tmp_path, {10: []}))
