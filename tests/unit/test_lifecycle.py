"""Settling worker exits into reasons."""

from __future__ import annotations

from otel_gunicorn._arbiter.lifecycle import ExitLedger


def test_aborted_worker_is_a_timeout():
    """A worker the arbiter aborted counts as timeout, whatever it said."""
    ledger = ExitLedger()
    ledger.goodbye(1, "normal")
    ledger.reaped(1, aborted=True)
    assert "timeout" == ledger.settle(1)


def test_goodbye_gives_the_reason():
    """A goodbye saying error counts as error."""
    ledger = ExitLedger()
    ledger.goodbye(1, "error")
    ledger.reaped(1, aborted=False)
    assert "error" == ledger.settle(1)


def test_no_goodbye_means_killed():
    """A worker that left without a word was killed by a signal it could not handle."""
    ledger = ExitLedger()
    ledger.reaped(1, aborted=False)
    assert "killed" == ledger.settle(1)
    assert {"timeout": 0, "killed": 1, "error": 0, "normal": 0} == ledger.counts


def test_unreaped_worker_is_not_settled():
    """settle() before the arbiter reaped the worker counts nothing."""
    ledger = ExitLedger()
    ledger.goodbye(1, "normal")
    assert None is ledger.settle(1)
    assert 0 == sum(ledger.counts.values())


def test_unknown_goodbye_reason_is_ignored():
    """Only normal and error are accepted from a worker; anything else leaves the default."""
    ledger = ExitLedger()
    ledger.goodbye(1, "timeout")
    ledger.reaped(1, aborted=False)
    assert "killed" == ledger.settle(1)
