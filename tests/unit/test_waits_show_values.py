"""Every wait in tests/, harness/ and bench/ says, when it gives up, the value it last read.

``harness.waiting.wait_until`` shows the last value its ``read`` returned. A ``read`` that is itself the test
(``lambda: server.value("x") == 2``) returns False or None, and a wait that times out then says
``last value read: False``: what it saw is lost (issue 19). Pass the reading as ``read`` and the test as ``until``
(``wait_until(lambda: server.value("x"), 15, until=lambda v: v == 2)``). This test finds the habit coming back: a
``wait_until`` whose first argument is a lambda returning a comparison, an ``and``/``or``, a ``not`` or
``value if test else None``, with no ``until=``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.waiting import LOG_LINES_SHOWN, LogText, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tests", "harness", "bench")
#: what such a lambda's body is: ``a == b``, ``x in text``, ``a and b``, ``not a``
_PREDICATES = (ast.Compare, ast.BoolOp)


def _called(call: ast.Call) -> str | None:
    """The name a call is made through: ``wait_until(...)`` and ``waiting.wait_until(...)`` alike."""
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_predicate(node: ast.expr) -> bool:
    """A test rather than a reading: a comparison, ``and``/``or``, ``not``, or a reading that a test turns into a
    stand-in when it does not match (``value if len(value) == 3 else None``; ``value if value else None`` reads)."""
    if isinstance(node, ast.IfExp):
        stand_in = any(isinstance(branch, ast.Constant) and not branch.value for branch in (node.body, node.orelse))
        return stand_in and _is_predicate(node.test)
    return isinstance(node, _PREDICATES) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not))


def hidden_value_waits(source: str) -> list[int]:
    """The lines of the ``wait_until`` calls in ``source`` that read a bool instead of the value they test."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and _called(node) == "wait_until" and node.args):
            continue
        read = node.args[0]
        if (
            isinstance(read, ast.Lambda)
            and _is_predicate(read.body)
            and not any(keyword.arg == "until" for keyword in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def scanned_files() -> list[Path]:
    return sorted(path for top in SCANNED for path in (ROOT / top).rglob("*.py"))


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scan itself: each kind of predicate is found, the converted form and other reads are not."""
    source = "\n".join(
        [
            "wait_until(lambda: server.value('x') == 2, 15)",  # 1: a comparison
            "wait_until(lambda: 'Booting' in server.log(), 15, what='boot')",  # 2: `in` is a comparison
            "wait_until(lambda: a() and b(), 15)",  # 3: and / or
            "waiting.wait_until(lambda: not server.alive(), 15)",  # 4: not, through the module
            "wait_until(lambda: slots() if len(slots()) == 3 else None, 15)",  # 5: a stand-in when it does not match
            "wait_until(lambda: server.value('x'), 15, until=lambda v: v == 2)",  # the read and the test apart
            "wait_until(server.scrape_text, 15)",  # a reading, truthy when done
            "wait_until(lambda: server.samples('x'), 15)",  # a reading
            "wait_until(lambda: server.value('x') if ready() else last, 15)",  # a reading either way
            "wait_until(lambda: seen[-1] if seen else None, 15)",  # None: nothing to read yet
            "other(lambda: a == b, 15)",  # not a wait
        ]
    )
    assert hidden_value_waits(source) == [1, 2, 3, 4, 5]


def test_every_wait_reads_the_value_it_tests() -> None:
    files = scanned_files()
    assert any(path.name == "waiting.py" for path in files), "the scan reads no file: is ROOT right?"
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in files
        for line in sorted(hidden_value_waits(path.read_text(encoding="utf-8")))
    ]
    assert not found, (
        "a wait whose read is the test itself says only 'last value read: False' when it times out; read the value "
        "and pass the test as until= (see harness/waiting.py):\n" + "\n".join(found)
    )


def test_a_wait_on_a_log_shows_its_last_lines_and_tests_all_of_it() -> None:
    """A log a wait reads is tested whole (a line far from its end counts) and shown by its last lines."""
    log = LogText("".join(f"line {n}\n" for n in range(1, 101)))
    assert log == wait_until(lambda: log, 1, until=lambda text: "line 3\n" in text)
    with pytest.raises(AssertionError) as failed:
        wait_until(lambda: log, 0.05, interval=0.01, what="'Booting worker'", until=lambda text: "Booting" in text)
    message = str(failed.value)
    shown = [f"line {n}" for n in range(101 - LOG_LINES_SHOWN, 101)]
    assert message.endswith(
        f"last value read: the log, the last {LOG_LINES_SHOWN} of its 100 lines:\n" + "\n".join(shown)
    )
    assert "line 80\n" not in message


def test_a_wait_shows_the_value_it_read() -> None:
    with pytest.raises(AssertionError, match=r"waiting for x == 2; last value read: 1$"):
        wait_until(lambda: 1, 0.05, interval=0.01, what="x == 2", until=lambda x: x == 2)
