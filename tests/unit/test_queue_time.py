"""Parsing proxy request-start headers into queue time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_gunicorn._worker.queue_time import MAX_WAIT, InvalidHeader, parse_start, scan_headers, wait_seconds

NOW = 1_780_000_000.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("t=1780000000123456", 1_780_000_000.123456),  # microseconds, Heroku / New Relic
        ("t=1780000000.123", 1_780_000_000.123),  # nginx t=${msec}
        ("1780000000", 1_780_000_000.0),  # seconds
        ("1780000000123", 1_780_000_000.123),  # milliseconds
        ("1780000000123456789", 1_780_000_000.123456789),  # nanoseconds
        ("  t=1780000000.5 ", 1_780_000_000.5),
    ],
)
def test_formats_are_told_apart_by_magnitude(value, expected):
    """Each supported format gives the same epoch seconds."""
    assert expected == pytest.approx(parse_start(value), abs=1e-6)


def test_wait_is_now_minus_start():
    """A start 250 ms before now is a 0.25 s wait."""
    assert 0.25 == pytest.approx(wait_seconds(f"t={int((NOW - 0.25) * 1e6)}", NOW), abs=1e-6)


def test_small_clock_skew_counts_as_no_wait():
    """A start slightly in the future (clock skew) is a zero wait, not an error."""
    assert 0.0 == wait_seconds(f"t={NOW + 0.5}", NOW)


@pytest.mark.parametrize("value", ["", "t=", "yesterday", "t=abc", "nan", "inf", "-5", "0", "1e30", f"{NOW + 60}"])
def test_malformed_future_or_absurd_values_are_invalid(value):
    """Garbage, far-future and impossible values raise InvalidHeader."""
    with pytest.raises(InvalidHeader):
        wait_seconds(value, NOW)


def test_too_old_is_invalid():
    """A start more than MAX_WAIT ago is not a queue: invalid."""
    with pytest.raises(InvalidHeader):
        wait_seconds(str(NOW - MAX_WAIT - 1), NOW)


@given(st.text(max_size=40))
def test_any_text_either_parses_or_is_invalid(value):
    """No input raises anything but InvalidHeader."""
    try:
        waited = wait_seconds(value, NOW)
    except InvalidHeader:
        return
    assert 0.0 <= waited <= MAX_WAIT


def test_scan_finds_the_queue_header_and_a_traceparent_in_one_pass():
    """X-Request-Start or X-Queue-Start (first one wins) and the presence of traceparent, from gunicorn's headers."""
    headers = [("HOST", "x"), ("X-QUEUE-START", "t=1"), ("TRACEPARENT", "00-..."), ("X-REQUEST-START", "t=2")]
    assert (True, "t=1") == scan_headers(headers)
    assert (False, "t=2") == scan_headers([("X-REQUEST-START", "t=2")])
    assert (False, None) == scan_headers([("HOST", "x")])
    assert (False, None) == scan_headers(None)
