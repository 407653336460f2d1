"""The one error ``otel-gunicorn top`` reports, with the exit code that goes with it.

Runs in the operator's terminal. Every failure the view can meet (a bad option, an unreachable endpoint, rejected
credentials, a TLS handshake, something that is not an otel_gunicorn endpoint) becomes a :class:`TopError` with a
one-line message, so the command never ends in a traceback and scripts can tell the causes apart by exit code.
"""

from __future__ import annotations

#: a bad option or an unreadable file named by one (argparse's usage errors use it too: see __main__.py)
USAGE = 1
#: nothing answered: refused, timed out, name not resolved, connection closed
UNREACHABLE = 2
#: the endpoint answered 401 or 403
CREDENTIALS = 3
#: something answered, but not with an otel_gunicorn exposition
NOT_OTEL_GUNICORN = 4
#: the TLS handshake failed (certificate not trusted, wrong protocol)
TLS = 5


class TopError(Exception):
    """A one-line message for the operator and the process exit code."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
