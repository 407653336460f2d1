"""The options and the refresh loop of ``otel-gunicorn top``: the only part of the view that reads a clock or a file.

Runs in the operator's terminal. :func:`run` checks the options, takes a first scrape (a failure there ends the
command with one line and an exit code from :mod:`.errors`), then prints one frame (``--once``, or when stdout is
not a terminal, one frame per refresh) or keeps a rich ``Live`` screen up to date. The password comes from a file
or the environment, never from the command line, where ``ps`` would show it to every user of the host.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Mapping

from rich.console import Console
from rich.live import Live

from otel_gunicorn._top.errors import USAGE, TopError
from otel_gunicorn._top.model import parse
from otel_gunicorn._top.options import PASSWORD_VARIABLE
from otel_gunicorn._top.scrape import Endpoint, TlsOptions, endpoint, fetch
from otel_gunicorn._top.view import Frame, fit, render
from otel_gunicorn._top.watch import Watch


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``top`` with parsed ``args``; the exit code (0 also on Ctrl-C)."""
    console = Console(highlight=False)
    try:
        target = build_endpoint(args, environ)
        if args.once or not console.is_terminal:
            return print_frames(console, target, None if args.once else args.interval)
        return live(console, target, args.interval)
    except TopError as exc:
        print(f"otel-gunicorn top: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0


def build_endpoint(args: argparse.Namespace, environ: Mapping[str, str]) -> Endpoint:
    if not args.interval > 0 or not args.timeout > 0:
        raise TopError(USAGE, "--interval and --timeout must be positive")
    tls = TlsOptions(args.cacert, args.insecure, args.cert, args.key)
    return endpoint(args.url, user=args.user, password=password(args, environ), tls=tls, timeout=args.timeout)


def password(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """The first line of ``--password-file``, else the environment variable; None when neither is set."""
    if args.password_file is None:
        return environ.get(PASSWORD_VARIABLE)
    try:
        with open(args.password_file, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise TopError(USAGE, f"cannot read --password-file {args.password_file}: {exc}") from None


def take(watch: Watch, target: Endpoint) -> Frame:
    """Scrape once and return the new frame; TopError when it fails."""
    text = fetch(target)
    try:
        scrape = parse(text)
    except TopError as exc:
        raise TopError(exc.exit_code, f"{target.url} is not an otel_gunicorn endpoint: {exc.message}") from None
    return watch.observe(scrape, time.monotonic(), datetime.datetime.now())


def print_frames(console: Console, target: Endpoint, interval: float | None) -> int:
    """One frame (``interval`` None), or one per refresh printed plainly, a failed refresh as a line of its own."""
    watch = Watch(target.url, interval)
    console.print(render(take(watch, target)))  # a first failure ends the command: nothing was shown yet
    while interval is not None:
        time.sleep(interval)
        console.print()
        try:
            console.print(render(take(watch, target)))
        except TopError as exc:
            console.print(f"{datetime.datetime.now():%H:%M:%S} refresh failed: {exc.message}", markup=False)
    return 0


def live(console: Console, target: Endpoint, interval: float) -> int:
    """The full-screen view until Ctrl-C; a failed refresh keeps the last frame and shows why."""
    watch = Watch(target.url, interval)
    frame = take(watch, target)
    with Live(fit(frame, console), console=console, screen=True, auto_refresh=False) as screen:
        deadline = time.monotonic()
        while True:
            # a steady beat; a refresh slower than the interval delays the next one rather than piling up
            deadline = max(deadline + interval, time.monotonic())
            time.sleep(max(0.0, deadline - time.monotonic()))
            try:
                frame = take(watch, target)
            except TopError as exc:
                frame = watch.failed(exc.message, datetime.datetime.now()) or frame
            screen.update(fit(frame, console), refresh=True)
