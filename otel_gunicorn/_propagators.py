"""``OTEL_PROPAGATORS`` checked before OpenTelemetry reads it, so a misspelt propagator cannot stop gunicorn.

opentelemetry-api reads the variable once, when ``opentelemetry.propagate`` is first imported, and raises
``ValueError`` for a name no installed package provides — under gunicorn, a 25-line traceback while loading the
configuration file, and no server. For standard variables the OpenTelemetry rule is to warn and carry on, so the
package's ``__init__`` (imported before any module of ours imports ``opentelemetry.propagate``) calls
:func:`drop_unknown`: unknown names are removed from the variable in the process environment, which the workers and
the exporter process inherit, and the warning waits in :data:`pending_warning` for the arbiter to log it once
gunicorn's logging is set up.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from importlib.metadata import entry_points

from otel_gunicorn._environment import OTEL_PROPAGATORS

#: the entry point group propagator packages register under
GROUP = "opentelemetry_propagator"
#: what the API uses when the variable is unset
DEFAULT = "tracecontext,baggage"

#: the warning :func:`drop_unknown` left for the arbiter to log once gunicorn's logging is set up (at most one)
_pending: list[str] = []


def drop_unknown(environ: MutableMapping[str, str]) -> str | None:
    """Remove the names of propagators that are not installed from ``OTEL_PROPAGATORS`` in ``environ``; keep the
    others (none left: the default). Returns the warning to log, or None when the variable is fine."""
    raw = environ.get(OTEL_PROPAGATORS, "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    if not names or any(name.lower() == "none" for name in names):
        return None
    installed = {entry.name for entry in entry_points(group=GROUP)}
    unknown = [name for name in names if name not in installed]
    if not unknown:
        return None
    known = [name for name in names if name in installed]
    environ[OTEL_PROPAGATORS] = ",".join(known) or DEFAULT
    warning = (
        f"{OTEL_PROPAGATORS}={raw!r}: no installed propagator is called {', '.join(map(repr, unknown))} "
        f"(installed: {', '.join(sorted(installed))}); using {environ[OTEL_PROPAGATORS]!r}"
    )
    _pending[:] = [warning]
    return warning


def take_pending_warning() -> str | None:
    """The warning :func:`drop_unknown` found, once (the arbiter logs it when its logging is ready); else None."""
    return _pending.pop() if _pending else None
