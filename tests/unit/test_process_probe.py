"""Unit tests for reading another process from /proc (otel_gunicorn._probes.process).

Fixtures under ``tests/fixtures/proc/`` were captured on Linux 6.18: ``gthread_worker.{stat,statm,status}`` from a
gunicorn gthread worker (``--threads 4``, after three requests) read one after the other, ``gunicorn_arbiter.stat``
and ``.statm`` from its arbiter, and the older ``.stat`` files of tests/unit/test_peer.py (a plain interpreter, a
script named ``x) y (z.py``, one named ``q) Z 1 (w``, an exited child not yet reaped).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.waiting import wait_until
from otel_gunicorn._probes.process import (
    PAGE_SIZE,
    ProcessMemory,
    ProcessStat,
    count_descriptors,
    parse_stat,
    parse_statm,
    read_descriptors,
    read_process,
)

PROC = Path(__file__).parent.parent / "fixtures" / "proc"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def fixture(name: str) -> str:
    return (PROC / name).read_text(encoding="utf-8")


def status_field(text: str, key: str) -> int:
    """A number of a captured ``status`` file (kB fields in kB)."""
    line = next(line for line in text.splitlines() if line.startswith(key + ":"))
    return int(line.split()[1])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gthread_worker.stat", ProcessStat("S", 11627, 2, 1, 4, 92322)),
        ("gunicorn_arbiter.stat", ProcessStat("S", 1, 49, 7, 3, 92255)),
        ("python.stat", ProcessStat("R", 4468, 1, 0, 1, 50056)),
        ("spaces_and_parens.stat", ProcessStat("R", 4468, 1, 0, 1, 50059)),
        ("fake_fields_in_name.stat", ProcessStat("R", 4468, 1, 0, 1, 50061)),
        ("zombie.stat", ProcessStat("Z", 4477, 0, 0, 1, 50065)),
    ],
    ids=["gthread-worker", "arbiter", "plain", "spaces-and-parens", "fake-fields-in-name", "zombie"],
)
def test_parse_captured_stat(name, expected):
    """State, parent, CPU ticks, threads and start time come from after the last ')' of the command name."""
    assert expected == parse_stat(fixture(name))


def test_the_captured_worker_stat_agrees_with_its_status():
    """The worker's threads in ``stat`` are the ``Threads`` of the ``status`` captured with it."""
    assert (
        status_field(fixture("gthread_worker.status"), "Threads") == parse_stat(fixture("gthread_worker.stat")).threads
    )


def test_parse_captured_statm():
    """``statm``'s first two numbers are the address space and the resident pages."""
    assert ProcessMemory(67952, 8972) == parse_statm(fixture("gthread_worker.statm"))


def test_the_captured_worker_statm_agrees_with_its_status():
    """``statm`` in pages is ``status``' VmSize and VmRSS in kB (the two exact sources of the same counts)."""
    status, memory = fixture("gthread_worker.status"), parse_statm(fixture("gthread_worker.statm"))
    kib = PAGE_SIZE // 1024
    assert (status_field(status, "VmSize"), status_field(status, "VmRSS")) == (
        memory.virtual_pages * kib,
        memory.resident_pages * kib,
    )


@pytest.mark.parametrize(
    "text", ["", "12 (x", "12 (x) S 1 2 3", "12 (x) S one 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19"]
)
def test_a_line_that_is_not_a_stat_line_is_refused(text):
    """A truncated or garbled line raises ValueError (the reader then reports nothing for the process)."""
    with pytest.raises(ValueError):
        parse_stat(text)


@pytest.mark.parametrize("text", ["", "12"])
def test_a_line_that_is_not_a_statm_line_is_refused(text):
    with pytest.raises(ValueError):
        parse_statm(text)


NUMBERS = st.integers(min_value=0, max_value=2**63 - 1)


@given(
    name=st.text(st.characters(blacklist_characters="\x00"), max_size=64),
    state=st.sampled_from("RSDZTtXI"),
    ppid=NUMBERS,
    user=NUMBERS,
    system=NUMBERS,
    threads=NUMBERS,
    start=NUMBERS,
)
def test_any_command_name_leaves_the_fields_intact(name, state, ppid, user, system, threads, start):
    """Whatever the command name holds (spaces, parentheses, newlines, digits), the fields after it parse back."""
    fields = [state, ppid, 1, 1, 0, -1, 4194304, 0, 0, 0, 0, user, system, 0, 0, 20, 0, threads, 0, start, 1, 1]
    line = f"42 ({name}) {' '.join(str(f) for f in fields)} 0 0\n"
    assert ProcessStat(state, ppid, user, system, threads, start) == parse_stat(line)


@pytest.mark.parametrize(
    ("size", "names", "expected"),
    [(12, None, 12), (0, ["0", "1", "2", "7"], 4), (0, [], 0), (0, None, None)],
    ids=["counted-by-the-kernel", "listed", "none-open", "unreadable"],
)
def test_count_descriptors(size, names, expected):
    """The kernel's count in st_size (Linux 6.2+) wins; otherwise the listing's entries count; neither: unknown."""
    assert expected == count_descriptors(size, names)


@linux_only
def test_read_descriptors_counts_a_process_opening_more():
    """Opening three files raises the count of the reading process by exactly three."""
    before = read_descriptors(os.getpid())
    files = [open(os.devnull) for _ in range(3)]
    try:
        assert before is not None
        assert before + 3 == read_descriptors(os.getpid())
    finally:
        for file in files:
            file.close()


@linux_only
def test_read_process_reads_a_live_child_and_then_its_zombie(tmp_path):
    """A sleeping child reads with its memory and descriptors; exited but not reaped, with its CPU time only; reaped,
    not at all."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = read_process(child.pid)
        assert live is not None and not live.dead
        assert live.stat.ppid == os.getpid()
        assert live.resident_bytes and live.virtual_bytes and live.descriptors
        child.kill()
        zombie = wait_until(
            lambda: read_process(child.pid), 10, 0.01, what="the killed child as a zombie", until=lambda r: r and r.dead
        )
        assert (zombie.memory, zombie.descriptors) == (None, None)
    finally:
        child.kill()
        child.wait()
    assert read_process(child.pid) is None
