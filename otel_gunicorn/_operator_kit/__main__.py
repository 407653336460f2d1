"""``python -m otel_gunicorn._operator_kit PATH...``: write the Grafana dashboard (``.json``) and the Prometheus rules
(``.yml``) to the paths given.

Run from a checkout by a developer (``make docs``), never inside gunicorn. It writes the paths it is given and
nothing else: run from an install, a default path would land in site-packages.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from otel_gunicorn._operator_kit.dashboard import render_dashboard
from otel_gunicorn._operator_kit.rules import render_rules

#: what each file suffix gets written with
RENDERERS: dict[str, Callable[[], str]] = {".json": render_dashboard, ".yml": render_rules, ".yaml": render_rules}
USAGE = (
    "usage: python -m otel_gunicorn._operator_kit PATH...  (.json: the Grafana dashboard, .yml: the Prometheus rules)\n"
    "e.g.   python -m otel_gunicorn._operator_kit \\\n"
    "         docs/grafana/otel-gunicorn.json docs/prometheus/otel-gunicorn.rules.yml"
)


def main(argv: list[str]) -> int:
    """Write each path in ``argv``; nothing at all when one of them is unusable."""
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    paths = [Path(arg) for arg in argv]
    for path in paths:
        if path.suffix not in RENDERERS:
            print(f"otel_gunicorn._operator_kit: {path}: expected a .json or .yml path\n{USAGE}", file=sys.stderr)
            return 2
        if not path.parent.is_dir():
            print(f"otel_gunicorn._operator_kit: {path.parent} is not a directory", file=sys.stderr)
            return 2
    for path in paths:
        path.write_text(RENDERERS[path.suffix]())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
