"""The options of ``otel-gunicorn top``, apart from the view so that ``otel-gunicorn --help`` works without rich.

Runs in the operator's terminal.
"""

from __future__ import annotations

import argparse

from otel_gunicorn import _environment

DEFAULT_URL = "http://localhost:9464/metrics"
#: where the basic-auth password comes from when ``--password-file`` is not given
PASSWORD_VARIABLE = _environment.OTEL_GUNICORN_TOP_PASSWORD


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``top`` on its (sub)parser."""
    parser.add_argument(
        "url", nargs="?", metavar="URL", default=DEFAULT_URL, help=f"the endpoint (default {DEFAULT_URL})"
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit (for scripts)")
    parser.add_argument(
        "--interval", type=float, metavar="SECONDS", default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", default=5.0, help="seconds to wait for the endpoint (default 5)"
    )
    parser.add_argument(
        "--user", metavar="NAME", help=f"basic-auth user; the password from --password-file or {PASSWORD_VARIABLE}"
    )
    parser.add_argument(
        "--password-file", metavar="FILE", help="a file holding the basic-auth password (its first line)"
    )
    parser.add_argument(
        "--cacert", metavar="FILE", help="PEM file of the CA (or the self-signed certificate) to trust for HTTPS"
    )
    parser.add_argument("--insecure", action="store_true", help="HTTPS without checking the server's certificate")
    parser.add_argument("--cert", metavar="FILE", help="PEM client certificate, when the endpoint asks for one")
    parser.add_argument("--key", metavar="FILE", help="PEM key of --cert (when not in the same file)")
