"""The worker→arbiter wire format: length-prefixed, versioned, size-limited frames over a unix stream socket.

A frame is a 12-byte header followed by a UTF-8 JSON payload::

    magic  b"OTGU"   4 bytes
    version          1 byte   (WIRE_VERSION)
    kind             1 byte   (FrameKind)
    reserved         2 bytes  (zero)
    length           4 bytes  big-endian payload length

JSON rather than pickle: the arbiter must never execute anything a worker (or an impostor) sends. A stream cannot be
resynchronised after a bad header, so :class:`FrameDecoder` refuses everything after its first error and the
arbiter drops that connection; the worker reconnects and its next (cumulative) report repairs what was lost.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import struct
from typing import Any

MAGIC = b"OTGU"
WIRE_VERSION = 1
HEADER = struct.Struct("!4sBBHI")


class FrameKind(enum.IntEnum):
    """What a frame carries."""

    SNAPSHOT = 1
    """A worker's cumulative metrics (see :mod:`otel_gunicorn._snapshot`)."""
    GOODBYE = 2
    """A worker's last word from ``worker_exit``: ``{"exit": "normal" | "error"}``."""


class ProtocolError(ValueError):
    """A frame or its payload is malformed, oversized or of an unknown version or kind."""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    kind: FrameKind
    payload: Any


def encode_frame(kind: FrameKind, payload: Any) -> bytes:
    """Serialise ``payload`` (JSON-compatible) into one frame."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return HEADER.pack(MAGIC, WIRE_VERSION, int(kind), 0, len(body)) + body


class FrameDecoder:
    """Incremental decoder for one connection: feed bytes, get whole frames.

    Args:
        max_frame_bytes: largest payload accepted; a bigger announced length is an error before any of it is buffered.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._failed = False

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Append ``data`` and return every frame now complete; raise :class:`ProtocolError` on garbage."""
        if self._failed:
            raise ProtocolError("decoder already failed on this stream")
        self._buffer += data
        frames = []
        try:
            while len(self._buffer) >= HEADER.size:
                magic, version, kind, _reserved, length = HEADER.unpack_from(self._buffer)
                _check_header(magic, version, kind, length, self._max)
                end = HEADER.size + length
                if len(self._buffer) < end:
                    break
                body = bytes(self._buffer[HEADER.size : end])
                del self._buffer[:end]
                frames.append(Frame(FrameKind(kind), _decode_json(body)))
        except ProtocolError:
            self._failed = True
            self._buffer.clear()
            raise
        return frames

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered towards an incomplete frame (a truncated stream leaves these behind)."""
        return len(self._buffer)


def _check_header(magic: bytes, version: int, kind: int, length: int, max_frame_bytes: int) -> None:
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != WIRE_VERSION:
        raise ProtocolError(f"unsupported wire version {version}")
    if kind not in FrameKind.__members__.values():
        raise ProtocolError(f"unknown frame kind {kind}")
    if length > max_frame_bytes:
        raise ProtocolError(f"frame of {length} bytes exceeds the {max_frame_bytes}-byte limit")


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"payload is not UTF-8 JSON: {exc}") from None
