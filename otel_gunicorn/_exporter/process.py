"""The exporter process's main loop: read snapshots from stdin, keep only the newest, export it over OTLP.

Memory stays bounded by construction: snapshots are cumulative, so a newer one supersedes any not yet exported
(nothing is lost); at most one waits while an export — with the SDK exporter's own
retries and backoff — is under way. A failing collector is logged once per outage and its recovery once. The process
ends when its stdin closes (the arbiter stopped or died).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _otlp
from otel_gunicorn._exporter.temporality import delta, unsent_exemplars, wants_delta
from otel_gunicorn._gunicorn_log import log_to_stderr
from otel_gunicorn._snapshot import Snapshot, metrics_data_from_snapshot, snapshot_from_payload
from otel_gunicorn._wire import FrameDecoder, FrameKind, ProtocolError

_log = logging.getLogger("otel_gunicorn.exporter")
_MAX_FRAME = 256 * 1024 * 1024


class LatestOnly:
    """A one-slot mailbox: :meth:`put` replaces what was not taken yet; :meth:`take` waits for something."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self._item = item
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def take(self) -> Any:
        """The newest item, or None once closed and drained."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item


def read_frames(stream: Any, mailbox: LatestOnly) -> None:
    """Feed every snapshot frame from ``stream`` into ``mailbox`` until EOF or garbage."""
    decoder = FrameDecoder(_MAX_FRAME)
    try:
        while chunk := stream.read1(1 << 16):
            for frame in decoder.feed(chunk):
                if frame.kind is FrameKind.SNAPSHOT:
                    mailbox.put(frame.payload)
    except (OSError, ProtocolError) as exc:
        _log.error("otel_gunicorn exporter: input from the arbiter unusable (%s); exiting", exc)
    finally:
        mailbox.close()


class Pusher:
    """Exports snapshots; tracks outages so each is logged once."""

    def __init__(self, exporter: Any, use_delta: bool, where: str = "the collector") -> None:
        self._exporter = exporter
        self._where = where
        self._use_delta = use_delta
        self._last_exported: Snapshot = {}
        self._last_time_ns: int | None = None
        self.failures_in_a_row = 0

    def shutdown(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception:  # noqa: BLE001 - exiting anyway
            _log.debug("exporter shutdown failed", exc_info=True)

    def push(self, payload: dict[str, Any]) -> bool:
        snapshot = snapshot_from_payload(payload)
        resource = Resource(dict(payload.get("resource") or {}))
        start_ns, now_ns = int(payload["start"]), int(payload["time"])
        sending = unsent_exemplars(snapshot, self._last_exported)
        if self._use_delta:
            data = metrics_data_from_snapshot(
                delta(sending, self._last_exported), resource, start_ns, now_ns, self._last_time_ns or start_ns
            )
        else:
            data = metrics_data_from_snapshot(sending, resource, start_ns, now_ns)
        try:
            result, said = _otlp.first_line_of(lambda: self._exporter.export(data))
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not end the process
            _log.debug("export raised", exc_info=True)
            result, error = MetricExportResult.FAILURE, repr(exc)
        else:
            error = f"the exporter said: {said}" if said else "the collector did not accept the data"
        if result is MetricExportResult.SUCCESS:
            if self.failures_in_a_row:
                _log.warning(
                    "otel_gunicorn exporter: OTLP export recovered after %d failed attempts", self.failures_in_a_row
                )
            self.failures_in_a_row = 0
            self._last_exported, self._last_time_ns = snapshot, now_ns
            return True
        if self.failures_in_a_row == 0:
            _log.warning(
                "otel_gunicorn exporter: OTLP export failing, to %s (%s); retrying with every interval, logged "
                "again on recovery. Cumulative data: nothing is lost while the outage lasts.",
                self._where,
                error,
            )
        self.failures_in_a_row += 1
        return False


def main(argv: list[str]) -> int:
    protocol = argv[0] if argv else "http/protobuf"
    where = f"{argv[1]} ({protocol})" if len(argv) > 1 else f"the collector ({protocol})"
    # Rendered like the server's own lines (console or JSON, OTEL_GUNICORN_LOG_FORMAT inherited from the arbiter), so
    # a JSON log stream stays JSON. The formatter is shared through _gunicorn_log: _logs is a sibling we may not import.
    log_to_stderr(os.environ)
    # The SDK exporters log every failed attempt; outages are reported once by the Pusher instead, quoting the first
    # line an attempt logged (_otlp.first_line_of holds them back).
    pusher = Pusher(_otlp.metric_exporter(protocol), wants_delta(os.environ), where)
    mailbox = LatestOnly()
    reader = threading.Thread(target=read_frames, args=(sys.stdin.buffer, mailbox), daemon=True)
    reader.start()
    while (payload := mailbox.take()) is not None:
        try:
            pusher.push(payload)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            _log.error("otel_gunicorn exporter: dropped an unusable snapshot: %s", exc)
    pusher.shutdown()
    return 0
