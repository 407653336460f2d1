"""OTEL_TRACES_EXPORTER=console and OTEL_LOGS_EXPORTER=console in a JSON log stream: one JSON document per line."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_console_spans_and_log_records_keep_a_json_stream_one_document_per_line(start_gunicorn):
    """Spans and log records printed on stdout between the JSON access lines are single lines too (before: the SDK's
    indented JSON, some twenty lines per span)."""
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_LOGS_EXPORTER": "console",
        "OTEL_GUNICORN_LOG_FORMAT": "json",
    }
    server = start_gunicorn("logging_app:app", args=["-w", "2"], env=env)
    assert [200] * 4 == server.load(4)

    server.stop()  # the workers print what they still hold on their way out

    documents = []
    for line in server.log().splitlines():
        try:
            documents.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not one JSON document: {line!r}\n{server.log()}")
    spans = [d for d in documents if d.get("kind") == "SpanKind.SERVER" and d["attributes"].get("url.path") == "/"]
    app_records = [d for d in documents if d.get("body") == "in.app"]
    assert (4, 4) == (len(spans), len(app_records)), server.log()
