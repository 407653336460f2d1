"""Every otel_gunicorn log message the docs quote is one the code can print.

A user greps their log for the line a page of docs/ quotes; a message reworded in the code and not in the docs sends
them looking for a line that no longer exists. The docs write placeholders as ``…`` or in capitals (``HOST:PORT``)
and example values where the code formats ``%s`` or ``{...}``: both sides' placeholders match anything.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "otel_gunicorn"
PREFIX = "otel_gunicorn: "
ANY = "\x00"  # a placeholder, on either side

#: what the console renderer puts after a message: the logger's name in brackets, then the event's keys
_RENDERED_TAIL = re.compile(r"\s+\[otel_gunicorn\].*$")
_DOC_PLACEHOLDER = re.compile(r"…|\.\.\.|\b[A-Z][A-Z_]{1,}\b(?![=_])")
_CODE_PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrgfx]")


def doc_quotes() -> list[tuple[str, str]]:
    """(where, quote) for each otel_gunicorn message quoted in docs/: inline code, and code-block lines."""
    quotes = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for number, line in enumerate(page.read_text().splitlines(), 1):
            spans = re.findall(r"`([^`]*)`", line) or [line]
            for text in spans:
                start = text.find(PREFIX)
                if start < 0 or text.lstrip().startswith("$"):  # a shell command grepping for it, not the line
                    continue
                quote = _RENDERED_TAIL.sub("", text[start:]).rstrip(",.;: ")
                quotes.append((f"{page.relative_to(ROOT)}:{number}", quote))
    return quotes


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _CODE_PLACEHOLDER.sub(ANY, node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            _CODE_PLACEHOLDER.sub(ANY, part.value)
            if isinstance(part, ast.Constant) and isinstance(part.value, str)
            else ANY
            for part in node.values
        )
    return None


@cache
def code_messages() -> tuple[str, ...]:
    """Every string the package could log with our prefix, placeholders marked."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = _literal(node) if isinstance(node, ast.expr) else None
            if text is not None and PREFIX in text:
                message = text[text.index(PREFIX) :]
                if not message.startswith(PREFIX + ANY):  # "otel_gunicorn: %s" would match any quote
                    found.add(message)
    return tuple(sorted(found))


def can_meet(pattern: str, other: str) -> bool:
    """Whether some text matches both: ``ANY`` in either is any run of characters (the other's placeholders too),
    except that one of ``other``'s (a value the code formats in) never runs across a clause (``;``): otherwise a
    reworded clause would pass as the value of the placeholder before it."""
    reachable = {(0, 0)}
    frontier = [(0, 0)]
    while frontier:
        i, j = frontier.pop()
        steps = []
        if i < len(pattern) and pattern[i] == ANY:
            steps += [(i + 1, j)] + ([(i, j + 1)] if j < len(other) else [])
        if j < len(other) and other[j] == ANY:
            steps += [(i, j + 1)] + ([(i + 1, j)] if i < len(pattern) and pattern[i] != ";" else [])
        if i < len(pattern) and j < len(other) and pattern[i] == other[j] != ANY:
            steps.append((i + 1, j + 1))
        for step in steps:
            if step not in reachable:
                reachable.add(step)
                frontier.append(step)
    return (len(pattern), len(other)) in reachable


def test_the_docs_quote_messages():
    """The docs quote several of our messages (a parser that finds none would pass every check below)."""
    assert len(doc_quotes()) >= 8


@pytest.mark.parametrize(("where", "quote"), doc_quotes(), ids=[where for where, _ in doc_quotes()])
def test_each_quoted_message_exists_in_the_code(where, quote):
    """The quoted line (up to where the docs stop quoting) is the beginning of a message the code logs."""
    pattern = _DOC_PLACEHOLDER.sub(ANY, quote) + ANY  # a quote may stop before the message ends
    matches = [message for message in code_messages() if can_meet(pattern, message)]
    assert matches, f"{where}: no message in otel_gunicorn/ reads {quote!r}"


def test_a_reworded_message_is_caught():
    """The matcher tells a changed word from a placeholder."""
    message = f"{PREFIX}cannot serve metrics on {ANY}:{ANY} ({ANY}); the application is unaffected"
    assert can_meet(f"{PREFIX}cannot serve metrics on {ANY}:{ANY} (…{ANY}", message)
    assert not can_meet(f"{PREFIX}could not serve metrics on {ANY}", message)
    assert not can_meet(f"{PREFIX}cannot serve metrics on h:p (e); the application is down{ANY}", message)
