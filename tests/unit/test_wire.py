"""Unit tests for the worker→arbiter frame format (otel_gunicorn._wire)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_gunicorn._wire import (
    HEADER,
    MAGIC,
    WIRE_VERSION,
    Frame,
    FrameDecoder,
    FrameKind,
    ProtocolError,
    encode_frame,
)

LIMIT = 1024 * 1024

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=20,
)
fast = settings(max_examples=75, deadline=None)


def header(
    *, magic: bytes = MAGIC, version: int = WIRE_VERSION, kind: int = FrameKind.SNAPSHOT, length: int = 0
) -> bytes:
    """A frame header with any field overridable."""
    return HEADER.pack(magic, version, kind, 0, length)


def raw_frame(
    body: bytes, *, magic: bytes = MAGIC, version: int = WIRE_VERSION, kind: int = FrameKind.SNAPSHOT
) -> bytes:
    """A frame with a hand-made body (not necessarily valid JSON)."""
    return header(magic=magic, version=version, kind=kind, length=len(body)) + body


@fast
@given(payload=json_values)
def test_round_trip(payload: object) -> None:
    """Any JSON-compatible payload decodes back to itself."""
    expected = [Frame(FrameKind.SNAPSHOT, payload)]

    actual = FrameDecoder(LIMIT).feed(encode_frame(FrameKind.SNAPSHOT, payload))

    assert expected == actual


@fast
@given(payloads=st.lists(json_values, min_size=1, max_size=4), data=st.data())
def test_split_feeding_gives_the_same_frames(payloads: list[object], data: st.DataObject) -> None:
    """Feeding a stream of frames in chunks cut at arbitrary byte boundaries yields the same frames, in order."""
    stream = b"".join(encode_frame(FrameKind.SNAPSHOT, p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    decoder = FrameDecoder(LIMIT)

    actual = [frame for chunk in chunks for frame in decoder.feed(chunk)]

    assert [Frame(FrameKind.SNAPSHOT, p) for p in payloads] == actual


def test_byte_by_byte_feeding_gives_the_frame() -> None:
    """One byte at a time, the frame appears only once its last byte arrives."""
    stream = encode_frame(FrameKind.SNAPSHOT, {"metrics": []})
    decoder = FrameDecoder(LIMIT)

    actual = [decoder.feed(stream[i : i + 1]) for i in range(len(stream))]

    assert [[]] * (len(stream) - 1) + [[Frame(FrameKind.SNAPSHOT, {"metrics": []})]] == actual


def test_encoded_frame_layout() -> None:
    """A frame is the 12-byte header (magic, version, kind, zero, big-endian length) followed by compact JSON."""
    body = b'{"a":[1,2]}'
    expected = MAGIC + bytes([WIRE_VERSION, FrameKind.SNAPSHOT, 0, 0]) + len(body).to_bytes(4, "big") + body

    actual = encode_frame(FrameKind.SNAPSHOT, {"a": [1, 2]})

    assert expected == actual


def test_non_ascii_text_is_sent_as_utf8() -> None:
    """Non-ASCII strings travel as UTF-8, not as \\u escapes."""
    expected = "é€😀".encode()

    actual = encode_frame(FrameKind.SNAPSHOT, "é€😀")[HEADER.size + 1 : -1]

    assert expected == actual


def test_truncated_stream_yields_no_frame_and_keeps_pending_bytes() -> None:
    """A frame cut short yields nothing and leaves its bytes pending."""
    stream = encode_frame(FrameKind.SNAPSHOT, {"metrics": [1, 2, 3]})
    decoder = FrameDecoder(LIMIT)

    frames = decoder.feed(stream[:-3])

    assert ([], len(stream) - 3) == (frames, decoder.pending_bytes)


def test_truncated_header_yields_no_frame() -> None:
    """Fewer than 12 bytes are buffered without being judged."""
    decoder = FrameDecoder(LIMIT)

    frames = decoder.feed(MAGIC + b"\x01")

    assert ([], 5) == (frames, decoder.pending_bytes)


def test_complete_frames_leave_nothing_pending() -> None:
    """After whole frames the buffer is empty."""
    decoder = FrameDecoder(LIMIT)

    decoder.feed(encode_frame(FrameKind.SNAPSHOT, 1) + encode_frame(FrameKind.SNAPSHOT, 2))

    assert 0 == decoder.pending_bytes


def test_frame_at_the_limit_is_accepted() -> None:
    """A payload of exactly max_frame_bytes decodes."""
    payload = "x" * 98  # 100 bytes of JSON with its quotes
    decoder = FrameDecoder(max_frame_bytes=100)

    actual = decoder.feed(encode_frame(FrameKind.SNAPSHOT, payload))

    assert [Frame(FrameKind.SNAPSHOT, payload)] == actual


def test_oversized_announced_length_raises_before_the_body_arrives() -> None:
    """A header announcing more than max_frame_bytes is rejected from the header alone."""
    decoder = FrameDecoder(max_frame_bytes=100)

    with pytest.raises(ProtocolError, match="exceeds the 100-byte limit") as info:
        decoder.feed(header(length=101))

    assert ("frame of 101 bytes exceeds the 100-byte limit", 0) == (str(info.value), decoder.pending_bytes)


def test_oversized_length_with_partial_body_buffers_nothing() -> None:
    """A 4 GiB announcement followed by some body bytes leaves nothing buffered."""
    decoder = FrameDecoder(LIMIT)

    with pytest.raises(ProtocolError):
        decoder.feed(header(length=2**32 - 1) + b"x" * 1000)

    assert 0 == decoder.pending_bytes


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (raw_frame(b"{}", magic=b"HTTP"), "bad magic b'HTTP'"),
        (b"GET / HTTP/1.1\r\n\r\n", "bad magic b'GET '"),
        (raw_frame(b"{}", version=0), "unsupported wire version 0"),
        (raw_frame(b"{}", version=WIRE_VERSION + 1), f"unsupported wire version {WIRE_VERSION + 1}"),
        (raw_frame(b"{}", kind=0), "unknown frame kind 0"),
        (raw_frame(b"{}", kind=255), "unknown frame kind 255"),
    ],
    ids=["magic", "http-request", "version-0", "version-next", "kind-0", "kind-255"],
)
def test_bad_header_raises(stream: bytes, message: str) -> None:
    """A header with the wrong magic, version or kind raises ProtocolError naming the problem."""
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(LIMIT).feed(stream)

    assert message == str(info.value)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b'"\xc3"', b"{", b"", b"[1,]", b"{} {}", b"\xef\xbb\xbf{}", b"[" * 100_000 + b"]" * 100_000],
    ids=["not-utf8", "truncated-utf8", "open-brace", "empty", "trailing-comma", "two-values", "bom", "deep-nesting"],
)
def test_bad_body_raises(body: bytes) -> None:
    """A body that is not one UTF-8 JSON value raises ProtocolError."""
    decoder = FrameDecoder(max_frame_bytes=len(body) + 1)

    with pytest.raises(ProtocolError) as info:
        decoder.feed(raw_frame(body))

    assert str(info.value).startswith("payload is not UTF-8 JSON")


def test_huge_integer_body_raises_protocol_error() -> None:
    """An integer longer than Python's digit limit is a ProtocolError, not a bare ValueError."""
    with pytest.raises(ProtocolError) as info:
        FrameDecoder(LIMIT).feed(raw_frame(b"9" * 10_000))

    assert str(info.value).startswith("payload is not UTF-8 JSON")


def test_decoder_refuses_input_after_a_failure() -> None:
    """Once a stream went bad, even a valid frame is refused (the stream cannot be resynchronised)."""
    decoder = FrameDecoder(LIMIT)
    with pytest.raises(ProtocolError):
        decoder.feed(raw_frame(b"{}", magic=b"NOPE"))

    with pytest.raises(ProtocolError) as info:
        decoder.feed(encode_frame(FrameKind.SNAPSHOT, {}))

    assert "decoder already failed on this stream" == str(info.value)


def test_frames_before_a_bad_one_are_lost_with_the_stream() -> None:
    """A good frame followed by garbage in the same chunk raises, and the buffer is cleared."""
    decoder = FrameDecoder(LIMIT)

    with pytest.raises(ProtocolError):
        decoder.feed(encode_frame(FrameKind.SNAPSHOT, 1) + raw_frame(b"{", kind=FrameKind.SNAPSHOT))

    assert 0 == decoder.pending_bytes


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_garbage_raises_only_protocol_error(chunks: list[bytes]) -> None:
    """Random bytes, fed in random chunks, either decode or raise ProtocolError, never anything else."""
    decoder = FrameDecoder(max_frame_bytes=256)
    outcomes = []

    for chunk in chunks:
        try:
            outcomes.append(all(isinstance(frame, Frame) for frame in decoder.feed(chunk)))
        except ProtocolError:
            outcomes.append(True)

    assert [True] * len(chunks) == outcomes


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64), kind=st.sampled_from(list(FrameKind)))
def test_garbage_body_behind_a_valid_header_raises_only_protocol_error(body: bytes, kind: FrameKind) -> None:
    """A valid header in front of random body bytes either decodes as JSON or raises ProtocolError."""
    try:
        expected = repr([Frame(kind, json.loads(body.decode("utf-8")))])  # repr: NaN is not equal to itself
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        expected = "ProtocolError"

    try:
        actual = repr(FrameDecoder(LIMIT).feed(raw_frame(body, kind=kind)))
    except ProtocolError:
        actual = "ProtocolError"

    assert expected == actual
