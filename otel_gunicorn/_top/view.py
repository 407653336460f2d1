"""Rendering one frame of ``otel-gunicorn top`` with rich: a summary line, then workers, routes, listeners and exits.

Runs in the operator's terminal. :func:`render` is a function of a :class:`Frame` only (no clock, no I/O), so the
same renderable serves the live view and ``--once``; rich drops colours and styles by itself when stdout is not a
terminal. Every value that is ``None`` in the model prints as "—": an absent metric is not a 0.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from otel_gunicorn._top.model import ListenerRow, Scrape, SlotRow
from otel_gunicorn._top.rates import Rates, RouteRow

ABSENT = "—"


@dataclasses.dataclass(frozen=True)
class Frame:
    """What one screen shows: the latest good scrape, what was derived from it, and how the last refresh went."""

    url: str
    taken_at: datetime.datetime
    scrape: Scrape
    rates: Rates
    #: seconds between refreshes; None for a single snapshot (``--once``)
    interval: float | None = None
    #: the last refresh's failure, while the screen keeps the frame of ``taken_at``
    error: str | None = None
    failed_at: datetime.datetime | None = None


def render(frame: Frame, routes_shown: int | None = None) -> RenderableType:
    """The whole screen: summary, workers, routes (at most ``routes_shown`` of them; none: no table), listeners
    (when the endpoint shows any), exits, status; a blank line between each."""
    parts: list[RenderableType] = [summary(frame), workers_table(frame.scrape.slots, frame.rates.cpu)]
    shown = frame.rates.routes[:routes_shown]
    if shown:
        parts.append(routes_table(frame.rates, shown))
    if frame.scrape.listeners:
        parts.append(listeners_table(frame.scrape.listeners))
    parts += [exits_table(frame.scrape, frame.rates), status_line(frame)]
    return Group(parts[0], *(Padding(part, (1, 0, 0, 0)) for part in parts[1:]))


def fit(frame: Frame, console: Console) -> RenderableType:
    """:func:`render` for a screen of ``console.height`` lines: as many routes as leave room for everything else.

    A live screen crops what does not fit at its bottom (the exits and the status line); routes are the part that
    gives way, from the least busy, and the table goes when not even one fits.
    """
    options = console.options.update(height=None)
    shown = len(frame.rates.routes)
    while shown and len(console.render_lines(render(frame, shown), options, pad=False)) > console.height:
        shown -= 1
    return render(frame, shown)


def number(value: float | None) -> str:
    if value is None:
        return ABSENT
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def seconds(value: float | None) -> str:
    if value is None:
        return ABSENT
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio(value: float | None, limit: float | None) -> str:
    """``value/limit``, or the one that is known; "—" when neither is."""
    if value is None and limit is None:
        return ABSENT
    return number(value) if limit is None else f"{number(value)}/{number(limit)}"


def summary(frame: Frame) -> Text:
    scrape, rates = frame.scrape, frame.rates
    text = Text()
    text.append("otel-gunicorn top ", style="bold")
    text.append(f"{frame.url}  {frame.taken_at:%H:%M:%S}\n")
    text.append("workers busy ").append(ratio(scrape.workers_busy, scrape.worker_limit), style="bold")
    if scrape.arbiter_memory is not None:
        text.append("   arbiter ").append(mebibytes(scrape.arbiter_memory), style="bold")
    if rates.request_rate is not None:
        text.append("   requests ").append(f"{rates.request_rate:.1f}/s", style="bold")
    else:
        text.append(f"   requests {ABSENT}/s")
        text.append(" (waiting for every worker to report twice)" if scrape.duration is not None else "", style="dim")
    text.append("\nlatency ")
    if rates.latency is None:
        text.append(ABSENT)
    else:
        text.append("  ".join(f"p{q * 100:g} {seconds(v)}" for q, v in rates.latency.items()), style="bold")
        text.append(" (since the server started)" if rates.cumulative else "", style="dim")
    if rates.window is not None:
        text.append(f"\nover {window_text(rates)}", style="dim")
    return text


def window_text(rates: Rates) -> str:
    """The window rates and latencies span, and how long ago it ended (the latest report seen)."""
    age = rates.window_age or 0.0
    ended = "up to now" if age < 0.5 else f"up to {age:.0f} s ago"
    return f"the last {rates.window:.1f} s of worker reports, {ended}"


def _table(title: str, headers: Iterable[str], left: int = 1) -> Table:
    """A table titled ``title``: its first ``left`` columns are names, the others numbers (right-aligned)."""
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < left else "right")
    return table


def percent(value: float | None) -> str:
    return ABSENT if value is None else f"{100 * value:.1f} %"


def routes_table(rates: Rates, shown: tuple[RouteRow, ...]) -> Table:
    """The busiest routes: by share of the capacity over the window; by requests since the server started before.
    ``shown`` may leave some of ``rates.routes`` out (a short terminal): the title says how many."""
    since = "the window above" if rates.window is not None else "since the server started"
    more = len(rates.routes) - len(shown)
    title = f"Routes ({since}{f'; {more} more, the terminal is too short' if more else ''})"
    table = _table(title, ["route", "requests", "req/s", "p99", "errors", "share"])
    table.columns[0].no_wrap, table.columns[0].overflow = True, "ellipsis"  # one line per route, fit() counts on it
    for row in shown:
        rate = ABSENT if row.rate is None else f"{row.rate:.1f}"
        table.add_row(
            row.route or "(no route)",
            number(row.requests),
            rate,
            seconds(row.p99),
            percent(row.error_ratio),
            percent(row.share),
        )
    return table


def mebibytes(value: float | None) -> str:
    return ABSENT if value is None else f"{value / (1 << 20):.0f} MiB"


def workers_table(slots: Iterable[SlotRow], cpu: Mapping[str, float] | None = None) -> Table:
    """One row per slot; ``cpu``: slot -> share of a core over the latest rounds of the arbiter's reads."""
    headers = ["slot", "state", "in flight", "connections", "threads busy", "pool queue", "heartbeat", "memory", "CPU"]
    table = _table("Workers", headers, 2)
    for row in slots:
        state = Text(ABSENT) if row.busy is None else Text("busy", "bold yellow") if row.busy else Text("idle", "green")
        table.add_row(
            row.slot,
            state,
            number(row.in_flight),
            ratio(row.connections, row.connection_limit),
            ratio(row.threads_busy, row.thread_limit),
            number(row.pool_queue),
            ABSENT if row.heartbeat_age is None else f"{row.heartbeat_age:.1f} s",
            mebibytes(row.memory),
            percent((cpu or {}).get(row.slot)),
        )
    if not table.rows:
        table.caption = "no worker has reported yet"
    return table


def listeners_table(listeners: tuple[ListenerRow, ...]) -> Table:
    per_slot = any(row.slot is not None for row in listeners)
    headers = ["listener", "transport", *(["slot"] if per_slot else []), "queued", "limit", "full"]
    table = _table("Listeners", headers, 3 if per_slot else 2)
    for row in listeners:
        full = ABSENT
        if row.queued is not None and row.limit:
            full = f"{100 * row.queued / row.limit:.0f} %"
        slot = [row.slot or ABSENT] if per_slot else []
        table.add_row(row.listener, row.transport, *slot, number(row.queued), number(row.limit), full)
    return table


def exits_table(scrape: Scrape, rates: Rates) -> Table | Text:
    totals, recent = scrape.exits, rates.exits_since_start or {}
    if totals is None:
        return Text(f"Worker exits {ABSENT}")
    table = _table("Worker exits", ["reason", "total", "since top started"])
    for reason in sorted(totals):
        since = recent.get(reason)
        alarming = bool(since) and reason != "normal"  # timeouts, kills and errors cut requests off
        table.add_row(reason, number(totals[reason]), Text(number(since), "bold red" if alarming else ""))
    return table


def status_line(frame: Frame) -> Text:
    if frame.error is not None:
        failed = f"{frame.failed_at:%H:%M:%S}" if frame.failed_at else ""
        text = Text(f"refresh failed {failed}: {frame.error}", style="bold red")
        return text.append(f" (showing {frame.taken_at:%H:%M:%S})", style="")
    if frame.interval is None:
        return Text(f"one snapshot at {frame.taken_at:%H:%M:%S}", style="dim")
    return Text(f"refreshing every {frame.interval:g} s, Ctrl-C quits", style="dim")
