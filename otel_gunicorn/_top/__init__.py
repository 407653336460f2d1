"""``otel-gunicorn top``: a live terminal view of a running server's Prometheus endpoint.

Runs in the operator's terminal, never inside gunicorn: it is a client of the endpoint the arbiter serves, and reads
only what a scrape shows. The layout splits I/O from the pure parts:

- :mod:`.model` parses one exposition into a :class:`~.model.Scrape` (per-slot rows, listener rows, totals);
- :mod:`.rates` compares two scrapes: request rate, latency percentiles, exits since ``top`` started;
- :mod:`.scrape` fetches the exposition (HTTP, HTTPS, basic auth) and turns every failure into one :class:`TopError`;
- :mod:`.view` renders a frame with rich; :mod:`.cli` holds the options and the refresh loop.
"""

from __future__ import annotations

from otel_gunicorn._top.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
