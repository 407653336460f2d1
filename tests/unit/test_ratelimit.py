"""Unit tests for rate-limited logging (otel_gunicorn._ratelimit)."""

from __future__ import annotations

import logging
import threading
import types
from collections.abc import Iterator

import pytest

from otel_gunicorn import _ratelimit
from otel_gunicorn._ratelimit import RateLimitedLogger
from tests.unit.clock import Clock
from tests.unit.records import Records


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replace the module's view of ``time`` with a hand-moved clock (the real time module is left alone)."""
    fake = Clock()
    monkeypatch.setattr(_ratelimit, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def records() -> Iterator[Records]:
    """A private, non-propagating logger's records."""
    handler = Records()
    logger = logging.getLogger("tests.ratelimit")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield handler
    logger.removeHandler(handler)
    logger.propagate = True


@pytest.fixture
def limited() -> RateLimitedLogger:
    """A rate-limited wrapper with a 60 s interval around the private logger."""
    return RateLimitedLogger(logging.getLogger("tests.ratelimit"), interval=60.0)


@pytest.mark.usefixtures("clock")
def test_first_message_is_logged(limited: RateLimitedLogger, records: Records) -> None:
    """The first message for a key is logged at its level with its arguments."""
    logged = limited.log(logging.WARNING, "k", "failed: %s", "boom")

    assert (True, [(logging.WARNING, "failed: boom")]) == (logged, records.messages)


def test_repeat_within_the_interval_is_suppressed(limited: RateLimitedLogger, records: Records, clock: Clock) -> None:
    """A second message for the same key within the interval is not logged."""
    limited.log(logging.WARNING, "k", "one")
    clock.now += 59.9

    logged = limited.log(logging.WARNING, "k", "two")

    assert (False, ["one"]) == (logged, [m for _, m in records.messages])


def test_repeat_after_the_interval_is_logged_with_the_suppressed_count(
    limited: RateLimitedLogger, records: Records, clock: Clock
) -> None:
    """After the interval the next message is logged and says how many were swallowed."""
    limited.log(logging.WARNING, "k", "failed %d", 1)
    for attempt in (2, 3, 4):
        clock.now += 10
        limited.log(logging.WARNING, "k", "failed %d", attempt)
    clock.now += 60

    logged = limited.log(logging.WARNING, "k", "failed %d", 5)

    expected = (True, ["failed 1", "failed 5 (3 similar messages suppressed)"])

    assert expected == (logged, [m for _, m in records.messages])


def test_interval_counts_from_the_last_logged_message(
    limited: RateLimitedLogger, records: Records, clock: Clock
) -> None:
    """Suppressed messages do not push the next logged one further away."""
    limited.log(logging.WARNING, "k", "a")
    clock.now += 50
    limited.log(logging.WARNING, "k", "b")
    clock.now += 10

    limited.log(logging.WARNING, "k", "c")

    assert ["a", "c (1 similar messages suppressed)"] == [m for _, m in records.messages]


def test_exactly_one_interval_later_is_logged(limited: RateLimitedLogger, records: Records, clock: Clock) -> None:
    """At exactly ``interval`` seconds the message is logged again."""
    limited.log(logging.WARNING, "k", "a")
    clock.now += 60

    limited.log(logging.WARNING, "k", "b")

    assert ["a", "b"] == [m for _, m in records.messages]


@pytest.mark.usefixtures("clock")
def test_keys_are_limited_independently(limited: RateLimitedLogger, records: Records) -> None:
    """A different key is not held back by another key's recent message."""
    limited.log(logging.WARNING, "accept", "a")

    logged = limited.log(logging.ERROR, "frame", "b")

    assert (True, [(logging.WARNING, "a"), (logging.ERROR, "b")]) == (logged, records.messages)


@pytest.mark.usefixtures("clock")
def test_reset_logs_the_next_message_at_once(limited: RateLimitedLogger, records: Records) -> None:
    """After reset the next message is logged immediately, without a stale suppressed count."""
    limited.log(logging.WARNING, "k", "a")
    limited.log(logging.WARNING, "k", "swallowed")
    limited.reset("k")

    logged = limited.log(logging.WARNING, "k", "b")

    assert (True, ["a", "b"]) == (logged, [m for _, m in records.messages])


@pytest.mark.usefixtures("clock")
def test_reset_of_an_unknown_key_is_harmless(limited: RateLimitedLogger, records: Records) -> None:
    """Resetting a key never logged does nothing."""
    limited.reset("never")

    assert [] == records.messages


@pytest.mark.usefixtures("clock")
def test_percent_in_message_without_args_is_literal(limited: RateLimitedLogger, records: Records) -> None:
    """A message with no arguments is not %-formatted (a literal '%' survives)."""
    limited.log(logging.WARNING, "k", "100% broken")

    assert ["100% broken"] == [m for _, m in records.messages]


def test_suppressed_count_with_a_message_without_args(
    limited: RateLimitedLogger, records: Records, clock: Clock
) -> None:
    """The suppressed-count suffix works for messages that had no arguments of their own."""
    limited.log(logging.WARNING, "k", "down")
    limited.log(logging.WARNING, "k", "down")
    clock.now += 60

    limited.log(logging.WARNING, "k", "down")

    assert ["down", "down (1 similar messages suppressed)"] == [m for _, m in records.messages]


def test_default_interval_is_a_minute(records: Records, clock: Clock) -> None:
    """Without an interval argument, repeats are held back for 60 seconds."""
    limited = RateLimitedLogger(logging.getLogger("tests.ratelimit"))
    limited.log(logging.WARNING, "k", "a")
    clock.now += 59
    limited.log(logging.WARNING, "k", "b")
    clock.now += 1
    limited.log(logging.WARNING, "k", "c")

    assert ["a", "c (1 similar messages suppressed)"] == [m for _, m in records.messages]


@pytest.mark.usefixtures("clock")
def test_concurrent_callers_log_one_message(limited: RateLimitedLogger, records: Records) -> None:
    """Many threads logging the same key at the same instant produce exactly one line."""
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(100):
            limited.log(logging.WARNING, "k", "same")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [(logging.WARNING, "same")] == records.messages
