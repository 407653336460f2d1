"""``otel-gunicorn top``: a live terminal view of a running server's Prometheus endpoint.

Runs in the operator's terminal, never inside gunicorn: it is a client of the endpoint the arbiter serves, and reads
only what a scrape shows. The layout splits I/O from the pure parts:

- :mod:`.model` parses one exposition into a :class:`~.model.Scrape` (per-slot rows, listener rows, totals);
- :mod:`.rates` compares two scrapes: request rate, latency percentiles, exits since ``top`` started;
- :mod:`.scrape` fetches the exposition (HTTP, HTTPS, basic auth) and turns every failure into one :class:`TopError`;
- :mod:`.view` renders a frame with rich; :mod:`.cli` holds the options and the refresh loop.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping

from otel_gunicorn._top.errors import USAGE
from otel_gunicorn._top.options import add_arguments

#: what to tell an operator whose installation has no rich (an optional dependency: a server does not need it)
NEEDS_RICH = (
    "otel-gunicorn top needs rich: pip install 'rich>=13' "
    "(or otel_gunicorn with its top extra: pip install '/path/to/otel-gunicorn[top]')"
)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``top`` (:func:`.cli.run`); without rich installed, one line saying how to get it."""
    try:
        from otel_gunicorn._top.cli import run as run_view
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "rich":
            raise
        print(NEEDS_RICH, file=sys.stderr)
        return USAGE
    return run_view(args, environ)


__all__ = ["add_arguments", "run"]
