"""A Prometheus exposition: fetched from an endpoint on loopback, parsed into samples to assert on or count."""

from __future__ import annotations

import dataclasses
import http.client
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import net


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
