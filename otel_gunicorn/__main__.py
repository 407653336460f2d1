"""The ``otel-gunicorn`` command (also ``python -m otel_gunicorn``): operator tools, run in a terminal, not gunicorn.

One subcommand so far, ``top``: a live view of a running server's Prometheus endpoint (see docs/top.md). Usage
errors exit 1 like the command's own bad options, so that exit 2 keeps its one meaning, "cannot reach the endpoint".
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from otel_gunicorn import _top
from otel_gunicorn._top.errors import USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    main_parser = _Parser(prog="otel-gunicorn", description="Operator tools for otel_gunicorn.")
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    top = commands.add_parser(
        "top",
        help="live view of a running server's endpoint",
        description="A live view of a running gunicorn's otel_gunicorn endpoint: workers, listener queues, "
        "request rate, latency and worker exits. Exit codes: 1 bad option, 2 cannot reach the endpoint, "
        "3 credentials needed or rejected, 4 not an otel_gunicorn endpoint, 5 TLS failure.",
    )
    _top.add_arguments(top)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _top.run(args, os.environ)
    except BrokenPipeError:
        # `otel-gunicorn top --once | head`: the reader left; say nothing, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
