"""A Prometheus exposition: fetched from an endpoint on loopback, parsed into samples to assert on or count; and the
waits that read it (each failing with the last value it read)."""

from __future__ import annotations

import dataclasses
import http.client
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from harness import net
from harness.waiting import wait_until

#: worker reports the arbiter accepted (``otel_gunicorn.channel.reports``, docs/metrics.md)
REPORTS = "otel_gunicorn_channel_reports_total"


@dataclasses.dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class Exposition:
    """One parsed scrape: read several values that belong together from it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._samples = [
            Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def __repr__(self) -> str:
        return f"<exposition of {len(self._samples)} samples>\n{self.text}"

    def samples(self, name: str) -> list[Sample]:
        """Every sample called exactly ``name`` (e.g. ``app_requests_total``)."""
        return [s for s in self._samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` matching ``labels``; None when there is none."""
        matching = [s.value for s in self.samples(name) if all(s.labels.get(k) == v for k, v in labels.items())]
        return sum(matching) if matching else None


def fetch(port: int, *, accept: str | None = None, timeout: float = 5.0) -> tuple[float, bytes]:
    """One GET /metrics on a new connection: (seconds until the whole body was read, body).

    An answer other than 200 raises ``http.client.HTTPException`` (which :func:`harness.waiting.wait_until` treats
    as not yet), as does a refused connection (``OSError``).
    """
    started = time.perf_counter()
    status, body = net.get(port, "/metrics", headers={"Accept": accept} if accept else None, timeout=timeout)
    seconds = time.perf_counter() - started
    if status != 200:
        raise http.client.HTTPException(f"GET /metrics on port {port} answered {status}")
    return seconds, body


def scrape(port: int, *, accept: str | None = None, timeout: float = 5.0) -> Exposition:
    """One scrape of the endpoint on ``port``, parsed."""
    return Exposition(fetch(port, accept=accept, timeout=timeout)[1].decode())


def wait_value(
    port: int, name: str, until: Callable[[float | None], object], timeout: float = 10.0, **labels: str
) -> float | None:
    """Scrape until ``until`` accepts the value of ``name`` (:meth:`Exposition.value`: summed over the samples
    matching ``labels``, None when there is none) and return it; AssertionError after ``timeout`` seconds, with the
    last value read."""
    return wait_until(lambda: scrape(port).value(name, **labels), timeout, what=f"{name}{labels or ''}", until=until)


def reports_at(port: int) -> Callable[[], float | None]:
    """A reading of the worker reports the arbiter serving its endpoint on ``port`` accepted (None before the first)."""
    return lambda: scrape(port).value(REPORTS, outcome="accepted")


def wait_reports(reports: Callable[[], float | None], workers: int, rounds: int = 2, timeout: float = 15.0) -> float:
    """Wait until each of the server's ``workers`` workers has sent ``rounds`` reports more than when called, as
    ``reports`` (a reading of :data:`REPORTS`, e.g. :func:`reports_at`) counts them; return the new count.

    Workers report on a timer of the same period, so ``(rounds + 1) * workers`` more reports take at least ``rounds``
    periods, in which every live worker reported ``rounds`` times; with two rounds, one of them was taken after the
    call even if another was on its way then, so what each worker had measured at the call has reached the arbiter.
    Wait on this, not on a sleep, for something that must *not* show up in the reports to come.
    """
    before = wait_until(reports, timeout, until=lambda value: value is not None, what=f"a count of {REPORTS}")
    assert before is not None
    wanted = before + (rounds + 1) * workers
    after = wait_until(
        reports, timeout, until=lambda value: value is not None and value >= wanted, what=f"{REPORTS} >= {wanted}"
    )
    assert after is not None
    return after
