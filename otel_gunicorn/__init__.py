"""otel_gunicorn: every gunicorn worker's OpenTelemetry metrics, exact and in one place.

The public surface is small: :mod:`otel_gunicorn.hooks` (gunicorn hooks), :mod:`otel_gunicorn.conf` (a ready
gunicorn config module) and :mod:`otel_gunicorn.logs` (structured, trace-correlated logs). Everything else is
configured through environment variables (``docs/environment.md``).
"""

import os

from otel_gunicorn import _propagators
from otel_gunicorn._version import __version__

# Before any module of ours imports opentelemetry.propagate, which would raise on an unknown propagator name.
_propagators.drop_unknown(os.environ)

__all__ = ["__version__"]
