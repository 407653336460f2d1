"""Unit tests for kernel-checked peer identity (otel_gunicorn._arbiter.peer).

The ``/proc/<pid>/stat`` fixtures were captured on Linux: ``python.stat`` from a plain interpreter,
``spaces_and_parens.stat`` from a script named ``x) y (z.py``, ``fake_fields_in_name.stat`` from a script named
``q) Z 1 (w`` (a name that fools a parser splitting at the first ')'), ``zombie.stat`` from an exited, unreaped child;
``dirty/`` holds a real gunicorn tree with a dirty pool (see ``TREE``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from otel_gunicorn._arbiter.peer import (
    Credentials,
    PeerKind,
    ProcStat,
    identify,
    is_running,
    lineage,
    parse_proc_stat,
    peer_credentials,
    read_proc_stat,
)

PROC = Path(__file__).parent.parent / "fixtures" / "proc"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and SO_PEERCRED")


def fixture(name: str) -> str:
    """A captured /proc/<pid>/stat line."""
    return (PROC / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("python.stat", ProcStat("R", 4468)),
        ("spaces_and_parens.stat", ProcStat("R", 4468)),
        ("fake_fields_in_name.stat", ProcStat("R", 4468)),
        ("zombie.stat", ProcStat("Z", 4477)),
    ],
    ids=["plain", "spaces-and-parens", "fake-fields-in-name", "zombie"],
)
def test_parse_captured_proc_stat(name: str, expected: ProcStat) -> None:
    """State and parent pid come from after the last ')' of the command name."""
    assert expected == parse_proc_stat(fixture(name))


def test_parse_proc_stat_without_trailing_newline() -> None:
    """The parser does not depend on the kernel's trailing newline."""
    assert ProcStat("R", 4468) == parse_proc_stat(fixture("python.stat").rstrip("\n"))


@pytest.mark.parametrize(
    ("text", "error"),
    [("", ValueError), ("1234 (python", ValueError), ("1234 (python) R", IndexError), ("1 (p) R x 1", ValueError)],
    ids=["empty", "no-close-paren", "no-ppid", "ppid-not-a-number"],
)
def test_parse_proc_stat_rejects_garbage(text: str, error: type[Exception]) -> None:
    """Malformed lines raise ValueError or IndexError, the errors read_proc_stat turns into None."""
    with pytest.raises((ValueError, IndexError)) as info:
        parse_proc_stat(text)

    assert error is type(info.value)


@linux_only
def test_read_proc_stat_of_ourselves() -> None:
    """Our own stat says we are running and names our parent."""
    assert ProcStat("R", os.getppid()) == read_proc_stat(os.getpid())


@linux_only
def test_read_proc_stat_of_a_missing_process() -> None:
    """A pid that does not exist gives None."""
    assert None is read_proc_stat(2**22 + 1)  # above the kernel's pid_max limit


@linux_only
def test_is_running_ourselves() -> None:
    """The current process is running."""
    assert True is is_running(os.getpid())


@linux_only
def test_is_running_is_false_for_a_zombie() -> None:
    """An exited but unreaped child is not running."""
    child = subprocess.Popen([sys.executable, "-c", ""])  # not os.fork: that warns in threaded processes (3.12+)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # wait until it is a zombie, without reaping it
    try:
        actual = is_running(child.pid)
    finally:
        child.wait()

    assert False is actual


@linux_only
def test_is_running_is_false_for_a_missing_process() -> None:
    """A pid that does not exist is not running."""
    assert False is is_running(2**22 + 1)


@linux_only
def test_peer_credentials_over_a_socketpair() -> None:
    """SO_PEERCRED on a socketpair reports our own pid, uid and gid."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        actual = peer_credentials(left)

    assert Credentials(os.getpid(), os.getuid(), os.getgid()) == actual


@linux_only
def test_peer_credentials_of_a_connected_unix_socket(tmp_path: Path) -> None:
    """Across listen/connect/accept the accepted socket names the connecting process."""
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            accepted, _ = listener.accept()
            with accepted:
                actual = peer_credentials(accepted)

    assert Credentials(os.getpid(), os.getuid(), os.getgid()) == actual


def test_peer_credentials_without_so_peercred_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SO_PEERCRED does not exist, OSError is raised (and the channel refuses the connection)."""
    monkeypatch.delattr(socket, "SO_PEERCRED", raising=False)
    left, right = socket.socketpair()
    with left, right, pytest.raises(OSError) as info:
        peer_credentials(left)

    assert "SO_PEERCRED is not available on this platform" == str(info.value)


# ---------------------------------------------------------------- lineage: who may report (dirty workers included)

# A real gunicorn 27 tree, captured from /proc while it served tests/e2e/apps/dirty_calls.py: the arbiter (32721), an
# HTTP worker (32729), the dirty arbiter (32724), a dirty worker (32737) and a process the HTTP worker forked (32742).
TREE = {
    name: parse_proc_stat((PROC / "dirty" / f"{name}.stat").read_text(encoding="utf-8"))
    for name in ("arbiter", "http_worker", "dirty_arbiter", "dirty_worker", "http_worker_child")
}
ARBITER, DIRTY_ARBITER = 32721, 32724


def parent_of(name: str) -> ProcStat | None:
    """What identify() reads as the parent: the dirty arbiter's stat when the process's parent is the dirty arbiter."""
    return TREE["dirty_arbiter"] if TREE[name].ppid == DIRTY_ARBITER else None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("http_worker", PeerKind.CHILD),
        ("dirty_arbiter", PeerKind.CHILD),
        ("dirty_worker", PeerKind.DIRTY_WORKER),
        ("http_worker_child", None),
        ("arbiter", None),
    ],
)
def test_lineage_in_a_captured_tree(name: str, expected: PeerKind | None) -> None:
    """Children and the dirty arbiter's children may report; a process an HTTP worker forked, or the arbiter, not."""
    assert expected is lineage(TREE[name], parent_of(name), ARBITER, DIRTY_ARBITER)


def test_lineage_without_a_dirty_arbiter_refuses_grandchildren() -> None:
    """With no dirty arbiter recorded (gunicorn < 25, no dirty_apps), a dirty arbiter's child is refused."""
    assert None is lineage(TREE["dirty_worker"], TREE["dirty_arbiter"], ARBITER, None)


def test_lineage_refuses_the_child_of_a_stale_dirty_arbiter_pid() -> None:
    """If gunicorn's dirty arbiter pid now names a process that is not our child, its children are refused."""
    stranger = TREE["dirty_arbiter"]._replace(ppid=1)
    assert None is lineage(TREE["dirty_worker"], stranger, ARBITER, DIRTY_ARBITER)


def test_lineage_refuses_a_grandchild_through_an_http_worker_named_as_dirty_arbiter() -> None:
    """Only the recorded dirty arbiter vouches for its children: an HTTP worker's child stays refused."""
    assert None is lineage(TREE["http_worker_child"], None, ARBITER, DIRTY_ARBITER)


def test_lineage_of_a_gone_process() -> None:
    """A peer that exited before /proc was read is refused."""
    assert None is lineage(None, None, ARBITER, DIRTY_ARBITER)


@linux_only
def test_identify_a_live_grandchild_through_the_dirty_arbiter() -> None:
    """A real child of a child of ours is a dirty worker when its parent is the recorded dirty arbiter, else refused."""
    # not os.fork: that warns in threaded processes (3.12+)
    with subprocess.Popen([sys.executable, "-c", MIDDLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as middle:
        assert middle.stdin is not None and middle.stdout is not None
        grandchild = int(middle.stdout.readline())
        actual = (
            identify(grandchild, os.getpid(), middle.pid),
            identify(grandchild, os.getpid(), None),
            identify(middle.pid, os.getpid(), middle.pid),
        )
        middle.stdin.close()  # the middle process kills its child and exits

    assert (PeerKind.DIRTY_WORKER, None, PeerKind.CHILD) == actual


#: stands in for the dirty arbiter: starts a child, prints its pid, and ends it when its stdin closes
MIDDLE = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
sys.stdin.read()
child.kill()
child.wait()
"""
