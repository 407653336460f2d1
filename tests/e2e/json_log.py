"""Reading a JSON-mode log (``OTEL_GUNICORN_LOG_FORMAT=json``) back in the end-to-end tests."""

from __future__ import annotations

import json


def json_lines(text: str) -> list[dict]:
    """Every non-empty line as a JSON object; fails naming the first line that is not one."""
    found = []
    for line in text.splitlines():
        if line.strip():
            try:
                found.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
    return found
