"""The published page: ``docs/benchmarks.md`` and its plots in ``docs/benchmarks/``, written from a run's results.

Also the short summary ``run.py`` prints. The page is generated: edit this module (or ``bench/findings.md``, which
is included as it is when it exists), never the page.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench import analysis, configs

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "benchmarks"
FINDINGS = Path(__file__).resolve().parent / "findings.md"
REPO = "https://github.com/otel-gunicorn/otel-gunicorn/blob/main"

CONFIG_ORDER = ("bare", "otel", "slow", "otlp", "prom", "naive")
COLOURS = {
    "bare": "#7f7f7f",
    "otel": "#1f77b4",
    "slow": "#9467bd",
    "otlp": "#17becf",
    "prom": "#d62728",
    "naive": "#ff7f0e",
}


# ---------------------------------------------------------------- formatting


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join("—" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def us(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def pct(value: float | None) -> str | None:
    return None if value is None else f"{value:+.1f} %"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def ms(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def config_label(key: str) -> str:
    c = configs.CONFIGURATIONS[key]
    return f"({c.letter}) {c.label}"


def classes(results: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in results.get("cpu", {}).get("classes", {}).items() if "setups" in v}


# ---------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _plain_log_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))


def _no_labels() -> Any:
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def plot_cpu(results: dict[str, Any], path: Path) -> bool:
    found = classes(results)
    if not found:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.4), sharex=True)
    names = list(found)
    width = 0.8 / len(CONFIG_ORDER)
    for ax, variant in zip(axes, ("hello", "recording")):
        for i, key in enumerate(CONFIG_ORDER):
            setup_key = "bare/hello" if key == "bare" else f"{key}/{variant}"
            values = [found[c]["setups"].get(setup_key, {}).get("us_per_request") for c in names]
            xs = [j + (i - (len(CONFIG_ORDER) - 1) / 2) * width for j in range(len(names))]
            bars = ax.bar(
                xs, [v or 0 for v in values], width, color=COLOURS[key], label=config_label(key), edgecolor="white"
            )
            for bar, value in zip(bars, values):
                if value:
                    ax.annotate(
                        f"{value:.0f}",
                        (bar.get_x() + bar.get_width() / 2, value),
                        ha="center",
                        va="bottom",
                        fontsize=6,
                        rotation=90,
                        xytext=(0, 2),
                        textcoords="offset points",
                    )
        if variant == "hello":  # the target: bare + 5 % (judged for sync and gthread only)
            labelled = False
            for j, c in enumerate(names):
                bare = found[c]["setups"].get("bare/hello", {}).get("us_per_request")
                if bare and c in analysis.JUDGED_CLASSES:
                    ax.hlines(
                        bare * (1 + analysis.OVERHEAD_TARGET_PCT / 100),
                        j - 0.45,
                        j + 0.45,
                        colors="#2ca02c",
                        lw=1,
                        linestyles="dashed",
                        label=None if labelled else "target: bare + 5 % (sync, gthread)",
                    )
                    labelled = True
        ax.set_ylabel("server CPU µs per request")
        title = configs.VARIANTS[variant] + ("" if variant == "hello" else " (bare: hello world)")
        ax.set_title(title, loc="left", fontsize=9)
        ax.margins(y=0.15)
    axes[-1].set_xticks(range(len(names)), [found[c]["label"] for c in names])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=3, loc="lower center", frameon=False, bbox_to_anchor=(0.5, 0))
    fig.suptitle("CPU per request, one worker, median of alternating rounds (lower is better)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_scrape_workers(results: dict[str, Any], path: Path) -> bool:
    live = results.get("scrape", {}).get("live")
    if not isinstance(live, dict) or not live.get("otel_gunicorn"):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for system, colour, label in (
        ("otel_gunicorn", COLOURS["otel"], "otel_gunicorn (arbiter endpoint)"),
        ("prometheus_client", COLOURS["prom"], "prometheus_client multiprocess (exporter process)"),
    ):
        rows = sorted((live.get(system) or {}).values(), key=lambda r: r["workers"])
        if rows:
            ax.plot([r["workers"] for r in rows], [r["median_ms"] for r in rows], "o-", color=colour, label=label)
    inproc = results.get("inprocess", {}).get("scrape") or {}
    points = [
        (int(n), r["text"]["idle"])
        for n, r in (inproc.get("live") or {}).items()
        if isinstance(r, dict) and isinstance(r.get("text"), dict) and "idle" in r["text"]
    ]
    if points:
        points.sort()
        ax.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            "s--",
            color=COLOURS["otel"],
            alpha=0.6,
            label="otel_gunicorn, in process (no socket, nothing changed)",
        )
    ax.axhline(analysis.SCRAPE_TARGET_MS, color="#2ca02c", lw=1, ls=":", label="target at 8 workers: 5 ms")
    ax.set_xlabel("live workers (× ~100 series each)")
    ax.set_ylabel("median scrape time, ms (log)")
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    ax.set_xticks(sorted({r["workers"] for s in live.values() if isinstance(s, dict) for r in s.values()}))
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Scrape time against live workers (lower is better)", loc="left", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_scrape_recycles(results: dict[str, Any], path: Path) -> bool:
    rec = results.get("scrape", {}).get("recycles")
    if not isinstance(rec, dict) or not rec.get("otel_gunicorn"):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for system, colour, label in (
        ("otel_gunicorn", COLOURS["otel"], "otel_gunicorn"),
        ("prometheus_client", COLOURS["prom"], "prometheus_client multiprocess"),
    ):
        rows = rec.get(system) or []
        if rows:
            ax.plot([r["recycles"] for r in rows], [r["median_ms"] for r in rows], "o-", color=colour, label=label)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    ticks = sorted(set(results.get("parameters", {}).get("recycle_points") or [])) or sorted(
        {r["recycles"] for rows in rec.values() if isinstance(rows, list) for r in rows}
    )
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(_no_labels())
    ax.set_xlabel("workers recycled so far (--max-requests)")
    ax.set_ylabel("median scrape time, ms (log)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Scrape time against worker recycles (flat is the goal)", loc="left", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_memory(results: dict[str, Any], path: Path) -> bool:
    cls = classes(results).get("sync")
    if not cls or not cls.get("memory"):
        return False
    plt = _pyplot()
    keys = [k for k in _setup_order(cls["memory"])]
    rss = [statistics.median(w["rss_mib"] for w in cls["memory"][k]["workers"]) for k in keys]
    pss = [statistics.median(w["pss_mib"] for w in cls["memory"][k]["workers"]) for k in keys]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(keys) + 1.4))
    ys = range(len(keys))
    ax.barh([y - 0.2 for y in ys], rss, 0.4, color="#1f77b4", label="VmRSS")
    ax.barh([y + 0.2 for y in ys], pss, 0.4, color="#aec7e8", label="Pss")
    for y, value in zip(ys, rss):
        ax.annotate(
            f"{value:.1f}", (value, y - 0.2), va="center", fontsize=6, xytext=(2, 0), textcoords="offset points"
        )
    ax.set_yticks(list(ys), [_short_label(k) for k in keys], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("worker memory, MiB")
    ax.set_title("Worker memory: sync, one worker, after the CPU rounds", loc="left", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


# ---------------------------------------------------------------- sections


def _setup_order(mapping: dict[str, Any]) -> list[str]:
    order = []
    for variant in ("hello", "recording"):
        for key in CONFIG_ORDER:
            k = f"{key}/{variant}"
            if k in mapping:
                order.append(k)
    return order


def _short_label(key: str) -> str:
    config, variant = key.split("/")
    short = {
        "bare": "bare",
        "otel": "otel_gunicorn",
        "slow": "otel_gunicorn, slow check",
        "otlp": "otel_gunicorn OTLP",
        "prom": "prometheus_client",
        "naive": "middleware + SDK",
    }[config]
    return f"({configs.CONFIGURATIONS[config].letter}) {short}, {'hello' if variant == 'hello' else 'recording'}"


def _setup_label(key: str) -> str:
    config, variant = key.split("/")
    return f"{config_label(config)}, {'hello' if variant == 'hello' else 'counter + histogram'}"


def section_targets(results: dict[str, Any]) -> str:
    rows = []
    for t in analysis.targets(results):
        mark = (
            {True: "✅ met", False: "❌ missed", None: "➖ not judged"}[t.met]
            if t.judged
            else "📊 reported, not judged"
        )
        rows.append((t.label, t.measured, t.target, f"{mark} — {t.detail}"))
    return table(("target", "measured", "target", "verdict"), rows, "llll")


def section_machine(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    p = results.get("parameters", {})
    commit = m.get("git_commit") or "unknown"
    modified = m.get("package_modified_since_commit")
    subject = m.get("git_commit_subject") or ""
    if len(subject) > 70:
        subject = subject[:70].rsplit(" ", 1)[0] + " …"
    commit_text = f"`{commit[:12]}`" + (f" ({subject})" if subject else "")
    if modified:
        commit_text += " **with uncommitted changes to otel_gunicorn/**"
    rows = [
        ("CPU", f"{m.get('cpus')} × {m.get('cpu_model')}"),
        ("memory", f"{m.get('memory_gib')} GiB"),
        ("kernel", m.get("kernel")),
        ("Python", m.get("python")),
        ("otel_gunicorn", f"{m.get('otel_gunicorn')} at commit {commit_text}"),
        *((name, version) for name, version in (m.get("packages") or {}).items()),
        ("wrk", m.get("wrk")),
        ("load average at start", " ".join(str(x) for x in m.get("loadavg_at_start", []))),
        (
            "run",
            f"{m.get('started')}, {duration(results.get('elapsed_s', 0))}" + (" (quick)" if p.get("quick") else ""),
        ),
    ]
    return table(("", ""), rows, "ll")


def section_cpu(results: dict[str, Any]) -> str:
    found = classes(results)
    out = []
    errors = {k: v["error"] for k, v in results.get("cpu", {}).get("classes", {}).items() if "error" in v}
    if not found and not errors:
        return "_Not measured in this run._"
    if found:
        headline = []
        for cls in found.values():
            s = cls["setups"]
            headline.append(
                (
                    cls["label"],
                    us(s.get("bare/hello", {}).get("us_per_request")),
                    *(pct(s.get(k, {}).get("overhead_pct")) for k in ("otel/hello", "otlp/hello", "naive/hello")),
                    *(
                        pct(s.get(k, {}).get("overhead_pct"))
                        for k in ("otel/recording", "prom/recording", "naive/recording")
                    ),
                )
            )
        out.append(
            "Overhead over bare gunicorn (hello world, nothing recorded), per worker class; the last three columns "
            "are an application recording one counter and one histogram per request:\n"
        )
        out.append(
            table(
                (
                    "worker class",
                    "bare µs/req",
                    "(b) otel_gunicorn",
                    "(c) OTLP mode",
                    "(e) middleware + SDK",
                    "(b) otel_gunicorn, recording",
                    "(d) prometheus_client, recording",
                    "(e) middleware + SDK, recording",
                ),
                headline,
            )
        )
        out.append("\n![CPU per request by worker class and configuration](benchmarks/cpu-per-request.png)\n")
    for cls in found.values():
        s = cls["setups"]
        rows = []
        for config in CONFIG_ORDER:
            hello = s.get("bare/hello" if config == "bare" else f"{config}/hello") or {}
            rec = {} if config == "bare" else s.get(f"{config}/recording") or {}
            rows.append(
                (
                    config_label(config),
                    us(hello.get("us_per_request")),
                    "baseline" if config == "bare" else pct(hello.get("overhead_pct")),
                    us(hello.get("arbiter_us_per_request")),
                    us(rec.get("us_per_request")),
                    pct(rec.get("overhead_pct")),
                    f"{hello.get('requests_per_s') or 0:.0f} / {rec.get('requests_per_s') or 0:.0f}"
                    if rec
                    else f"{hello.get('requests_per_s') or 0:.0f}",
                    " / ".join(str(x.get("valid_rounds", 0)) for x in (hello, rec) if x),
                )
            )
        out.append(
            f"### {cls['label']}\n\n`{' '.join(cls['args'])}`, one worker, `wrk -t1 -c{cls['wrk_connections']}`, "
            f"{plural(cls['rounds'], 'round')} of {cls['seconds_per_round']} s"
            + (", gunicorn pinned to CPU 1 and wrk to CPU 0" if cls.get("pinned") else ", not pinned")
            + ". Medians of the rounds; *vs bare* against bare gunicorn's hello world.\n"
        )
        out.append(
            table(
                (
                    "configuration",
                    "hello µs/req",
                    "vs bare",
                    "of which arbiter",
                    "recording µs/req",
                    "vs bare",
                    "req/s (context)",
                    "valid rounds",
                ),
                rows,
            )
            + "\n"
        )
    for key, error in errors.items():
        out.append(f"### {key}\n\nNot measured: `{error}`\n")
    return "\n".join(out)


def section_scrape(results: dict[str, Any]) -> str:
    scrape = results.get("scrape", {})
    out = []
    live = scrape.get("live")
    if isinstance(live, dict) and "error" not in live:
        ours, theirs = live.get("otel_gunicorn") or {}, live.get("prometheus_client") or {}
        rows: list[tuple[Any, ...]] = []
        for n in sorted({*ours, *theirs}, key=int):
            a, b = ours.get(n) or {}, theirs.get(n) or {}
            ratio = b["median_ms"] / a["median_ms"] if a.get("median_ms") and b.get("median_ms") else None
            rows.append(
                (
                    n,
                    f"{ms(a.get('median_ms'))} ({ms(a.get('p95_ms'))})" if a else None,
                    ms(a.get("cpu_ms_per_scrape")),
                    f"{a.get('samples')} / {a.get('body_bytes', 0) // 1024} KiB" if a else None,
                    f"{ms(b.get('median_ms'))} ({ms(b.get('p95_ms'))})" if b else None,
                    ms(b.get("cpu_ms_per_scrape")),
                    f"{b.get('samples')} / {b.get('body_bytes', 0) // 1024} KiB" if b else None,
                    f"{ratio:.1f}×" if ratio else None,
                )
            )
        out.append("### Against live workers\n")
        out.append(
            table(
                (
                    "workers",
                    "otel_gunicorn median (p95) ms",
                    "arbiter CPU ms/scrape",
                    "samples / size",
                    "prometheus_client median (p95) ms",
                    "exporter CPU ms/scrape",
                    "samples / size",
                    "prometheus_client ÷ otel_gunicorn",
                ),
                rows,
            )
        )
        out.append("\n![Scrape time against live workers](benchmarks/scrape-workers.png)\n")
    elif isinstance(live, dict):
        out.append(f"### Against live workers\n\nNot measured: `{live['error']}`\n")
    rec = scrape.get("recycles")
    if isinstance(rec, dict) and "error" not in rec:
        ours, theirs = rec.get("otel_gunicorn") or [], rec.get("prometheus_client") or []
        rows = []
        for i in range(max(len(ours), len(theirs))):
            a = ours[i] if i < len(ours) else {}
            b = theirs[i] if i < len(theirs) else {}
            ratio = b["median_ms"] / a["median_ms"] if a.get("median_ms") and b.get("median_ms") else None
            rows.append(
                (
                    (a or b).get("target"),
                    f"{a.get('recycles')} / {b.get('recycles')}",
                    f"{ms(a.get('median_ms'))} ({ms(a.get('p95_ms'))})" if a else None,
                    ms(a.get("cpu_ms_per_scrape")),
                    a.get("samples"),
                    a.get("arbiter_rss_mib"),
                    "=" if a and a.get("merged_count") == a.get("requests") else ("≠" if a else None),
                    f"{ms(b.get('median_ms'))} ({ms(b.get('p95_ms'))})" if b else None,
                    ms(b.get("cpu_ms_per_scrape")),
                    b.get("scrapes"),
                    f"{ratio:.0f}×" if ratio else None,
                )
            )
        out.append("### Against worker recycles\n")
        out.append(
            table(
                (
                    "recycles (target)",
                    "reached (ours / theirs)",
                    "otel_gunicorn median (p95) ms",
                    "arbiter CPU ms/scrape",
                    "samples",
                    "arbiter VmRSS MiB",
                    "merged count = requests",
                    "prometheus_client median (p95) ms",
                    "exporter CPU ms/scrape",
                    "scrapes",
                    "ratio",
                ),
                rows,
            )
        )
        spent = [r[-1].get("recycling_s") for r in (ours, theirs) if r]
        if all(spent) and len(spent) == 2:
            rates = [rows[-1]["recycles"] / s for rows, s in zip((ours, theirs), spent)]
            out.append(
                f"\nRecycling took {spent[0]:.0f} s under otel_gunicorn ({rates[0]:.1f} workers replaced per second) "
                f"and {spent[1]:.0f} s under prometheus_client ({rates[1]:.1f} per second), both servers recycling "
                "at the same time.\n"
            )
        out.append("\n![Scrape time against worker recycles](benchmarks/scrape-recycles.png)\n")
    elif isinstance(rec, dict):
        out.append(f"### Against worker recycles\n\nNot measured: `{rec['error']}`\n")
    out.append(section_scrape_inprocess(results))
    return "\n".join(out) if out else "_Not measured in this run._"


def section_scrape_inprocess(results: dict[str, Any]) -> str:
    inproc = results.get("inprocess", {}).get("scrape")
    head = "### In process (`bench/scrape_inprocess.py`)\n\n"
    if not inproc:
        return head + "_Not measured in this run._\n"
    if "error" in inproc and not inproc.get("live"):
        return head + f"Not included: {inproc['error']}.\n"
    live = inproc.get("live") or {}
    if not all(isinstance(r, dict) and isinstance(r.get("text"), dict) for r in live.values()):
        flat: list[tuple[str, str]] = []  # a shape this page does not know: every number, by its path
        _flatten("", inproc, flat)
        return head + table(("figure", "value"), flat, "lr") + "\n"
    rows = []
    situations = ("idle", "few", "all")

    def row(label: str, result: dict[str, Any]) -> tuple:
        cells = []
        for fmt in ("text", "openmetrics"):
            values = result.get(fmt) or {}
            cells += [ms(values.get(s)) for s in situations]
        return (label, *cells, (result.get("bytes") or {}).get("text"))

    for n, result in sorted((inproc.get("live") or {}).items(), key=lambda kv: int(kv[0])):
        rows.append(row(f"{n} × 100, fresh", result))
    recycled = inproc.get("recycled") or {}
    if recycled.get("result"):
        rows.append(row(f"8 × 100, after {recycled['recycles']} recycles", recycled["result"]))
    text = (
        head + "The arbiter's `/metrics` WSGI call measured in one process, without sockets: median ms of "
        f"{inproc.get('scrapes')} calls when between two scrapes nothing changed (*idle*: every worker re-sent the "
        "same snapshot), one worker changed one counter (*few*), or every series of every worker changed (*all*).\n\n"
    )
    text += table(
        (
            "workers × series",
            "text idle",
            "text few",
            "text all",
            "OpenMetrics idle",
            "OpenMetrics few",
            "OpenMetrics all",
            "bytes",
        ),
        rows,
    )
    if recycled.get("error"):
        text += f"\n\nAfter recycles: {recycled['error']}."
    return text + "\n"


def section_memory(results: dict[str, Any]) -> str:
    cls = classes(results).get("sync")
    if not cls or not cls.get("memory"):
        return "_Not measured in this run._"
    mem = cls["memory"]
    rows = []
    for key in _setup_order(mem):
        m = mem[key]
        w = m["workers"]

        def med(field: str, workers: list[dict[str, float]] = w) -> float:
            return round(statistics.median(x[field] for x in workers), 1)

        rows.append(
            (
                _setup_label(key),
                med("rss_mib"),
                med("rss_anon_mib"),
                med("pss_mib"),
                round(m["arbiter"]["rss_mib"], 1),
                round(m["arbiter"]["pss_mib"], 1),
                round(m["exporter"]["rss_mib"], 1) if m.get("exporter") else None,
            )
        )
    out = [
        "Sync worker class, one worker per server, read after the CPU rounds and the rest period (MiB):\n",
        table(
            (
                "server",
                "worker VmRSS",
                "worker RssAnon",
                "worker Pss",
                "arbiter VmRSS",
                "arbiter Pss",
                "exporter VmRSS",
            ),
            rows,
        ),
    ]
    per_class = []
    for key in classes(results):
        d = analysis.memory_overhead(results, key)
        r = analysis.memory_overhead(results, key, "otel/recording")
        if d:
            per_class.append((classes(results)[key]["label"], d["rss_mib"], d["pss_mib"], r["rss_mib"] if r else None))
    if per_class:
        out.append("\nWorker overhead of otel_gunicorn over bare gunicorn, per worker class (MiB):\n")
        out.append(table(("worker class", "VmRSS, hello", "Pss, hello", "VmRSS, recording"), per_class))
    if cls.get("collector_rss_mib"):
        out.append(f"\nThe Rotel collector (shared by (c) and (e)): {cls['collector_rss_mib']} MiB VmRSS.")
    out.append("\n![Worker memory by configuration](benchmarks/memory.png)\n")
    return "\n".join(out)


def section_channel(results: dict[str, Any]) -> str:
    cls = classes(results).get("sync")
    idle = (cls or {}).get("idle")
    if not idle:
        return "_Not measured in this run._"
    rows: list[tuple[Any, ...]] = []
    for key in _setup_order(idle):
        r = idle[key]
        if not r.get("valid"):
            rows.append((_setup_label(key), "a worker was replaced", None, None))
            continue
        exporter = None if r.get("exporter_pct") is None else f"{r['exporter_pct']:.3f}"
        rows.append((_setup_label(key), f"{r['worker_pct']:.3f}", f"{r['arbiter_pct']:.3f}", exporter))
    seconds = next((r["seconds"] for r in idle.values() if r.get("valid")), None)
    channel = analysis.channel_cost(results)
    text = (
        f"The same sync servers left without traffic for {seconds:.0f} s after their CPU rounds, all at once: CPU "
        "time as % of one core, from the threads' on-CPU time in nanoseconds (`/proc/<pid>/task/<tid>/schedstat`):\n\n"
        if seconds
        else ""
    )
    text += table(("server", "per worker %", "arbiter %", "exporter process %"), rows)
    if channel:
        text += (
            f"\n\notel_gunicorn's channel, worker minus bare worker: **{channel['worker_pct']:.3f} %** of a core per "
            f"worker; arbiter minus bare arbiter: {channel['arbiter_pct']:.3f} %."
        )
    return text


def section_otlp(results: dict[str, Any]) -> str:
    found = classes(results)
    if not found:
        return "_Not measured in this run._"
    rows = []
    for cls in found.values():
        s = cls["setups"]
        for variant in ("hello", "recording"):
            otlp, prom = s.get(f"otlp/{variant}"), s.get(f"otel/{variant}")
            if not otlp:
                continue
            idle = (cls.get("idle") or {}).get(f"otlp/{variant}") or {}
            exporter_mem = ((cls.get("memory") or {}).get(f"otlp/{variant}") or {}).get("exporter") or {}
            rows.append(
                (
                    f"{cls['label']}, {variant}",
                    us(otlp.get("us_per_request")),
                    pct(otlp.get("overhead_pct")),
                    us(prom.get("us_per_request")) if prom else None,
                    us(otlp.get("exporter_us_per_request")),
                    None if otlp.get("exporter_pct") is None else f"{otlp['exporter_pct']:.2f}",
                    None if idle.get("exporter_pct") is None else f"{idle['exporter_pct']:.3f}",
                    None if exporter_mem.get("rss_mib") is None else round(exporter_mem["rss_mib"], 1),
                )
            )
    return (
        "OTLP mode (`OTEL_METRICS_EXPORTER=otlp`) from the CPU rounds above: the arbiter merges the workers' reports "
        "and hands a snapshot to its exporter process, which pushes it to the local Rotel collector over "
        f"http/protobuf every {configs.OTLP_INTERVAL_MS / 1000:g} s (`OTEL_METRIC_EXPORT_INTERVAL`; the default is "
        "60 s). The exporter process's CPU is not in the per-request figure of arbiter and workers; it is given "
        "on its own, over all rounds together (its pushes are seconds apart: one round alone mostly sees none).\n\n"
        + table(
            (
                "worker class, app",
                "OTLP µs/req",
                "vs bare",
                "Prometheus mode µs/req",
                "exporter process µs/req",
                "exporter under load % of a core",
                "exporter at rest % of a core",
                "exporter VmRSS MiB",
            ),
            rows,
        )
    )


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix} › {key}" if prefix else str(key), sub, rows)
    elif isinstance(value, float):
        rows.append((prefix, f"{value:.2f}"))
    else:
        rows.append((prefix, str(value)))


#: ``request_path_inprocess`` case names the page lays out in tables; any other case it returns is listed as well,
#: by its module's own description (``CASES``)
_HOOK_LABELS = {
    "sync": "sync: gunicorn's `cfg.pre_request`, `log.access`, `cfg.post_request`",
    "gthread": "gthread: the same calls, on a pool thread",
}
_BOUNDARY_LABELS = {
    "wsgi": "WSGI application boundary (gevent_pywsgi, tornado: no hooks called)",
    "asgi": "ASGI application boundary (uvicorn-worker: no hooks called)",
}
_FILTERS = ("trace_based", "always_off", "always_on")
_INSTRUMENT_VARIANTS = {
    "": "made after the worker's provider, no attribute, no span",
    "_proxy": "made at import (the API's proxy), no attribute, no span",
    "_proxy_attr": "made at import, one attribute",
    "_proxy_span": "made at import, inside a sampled span",
    "_proxy_attr_span": "made at import, one attribute, inside a sampled span",
}
_INSTRUMENT_CALLS = {"counter": "`counter.add(1)`", "histogram": "`histogram.record(v)`"}
_PROMETHEUS_VARIANTS = {"": "no label", "_label": "one label (`.labels()` per call)"}


def _us2(value: Any) -> str | None:
    return f"{value:.2f}" if isinstance(value, (int, float)) else None


def request_path_tables(figures: dict[str, Any], descriptions: dict[str, str]) -> list[str]:
    """Markdown tables of every figure ``request_path_inprocess.measure()`` returned: the hook path and the
    application boundary (bare, otel_gunicorn, overhead), the application's instruments per exemplar filter against
    prometheus_client, and any other case under its own description."""
    used: set[str] = set()
    out: list[str] = []

    rows: list[tuple[Any, ...]] = []
    for name in figures:
        hooks = re.fullmatch(r"hooks_bare_(\w+)", name)
        boundary = re.fullmatch(r"(\w+)_bare", name)
        if hooks:
            kind = hooks.group(1)
            bare, ours, over = name, f"hooks_otel_{kind}", f"hooks_{kind}_overhead"
            label = _HOOK_LABELS.get(kind, f"{kind}: gunicorn's hook calls")
        elif boundary and f"{boundary.group(1)}_boundary" in figures:
            kind = boundary.group(1)
            bare, ours, over = name, f"{kind}_boundary", f"{kind}_boundary_overhead"
            label = _BOUNDARY_LABELS.get(kind, f"{kind} application boundary")
        else:
            continue
        overhead = figures.get(over)
        if overhead is None and isinstance(figures.get(ours), (int, float)):
            overhead = figures[ours] - figures[bare]
        rows.append((label, _us2(figures[bare]), _us2(figures.get(ours)), _us2(overhead)))
        used |= {bare, ours, over}
    if rows:
        out.append("Request path, µs of CPU per request:\n")
        out.append(table(("what gunicorn runs per request", "bare gunicorn", "otel_gunicorn", "overhead"), rows))

    # instrument -> (implementation, variant) -> filter -> case: ``sdk_counter_trace_based_proxy`` and the like,
    # whatever the implementation's prefix (the SDK's, or otel_gunicorn's own aggregation)
    instruments: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    for name in figures:
        match = re.fullmatch(r"([a-z]+)_(counter|histogram)_(" + "|".join(_FILTERS) + r")(.*)", name)
        if match:
            implementation, instrument, flt, variant = match.groups()
            instruments.setdefault(instrument, {}).setdefault((implementation, variant), {})[flt] = name
    for name in figures:
        match = re.fullmatch(r"prometheus_(counter|histogram)(_label)?", name)
        if match:
            instruments.setdefault(match.group(1), {})
    for instrument, variants in instruments.items():
        filters = [f for f in _FILTERS if any(f in cases for cases in variants.values())]
        rows = []
        for (implementation, variant), cases in variants.items():
            first = cases[next(iter(cases))]
            fallback = "SDK" if implementation == "sdk" else implementation
            what = re.sub(r",? *filter \w+$", "", descriptions.get(first, fallback))
            rows.append(
                (
                    f"{what}, {_INSTRUMENT_VARIANTS.get(variant, variant.strip('_').replace('_', ', '))}",
                    *(_us2(figures.get(cases[f])) if f in cases else None for f in filters),
                )
            )
            used |= set(cases.values())
        for suffix, label in _PROMETHEUS_VARIANTS.items():
            name = f"prometheus_{instrument}{suffix}"
            if name in figures:
                rows.append(
                    (f"prometheus_client multiprocess, {label}", _us2(figures[name]), *[""] * (len(filters) - 1))
                )
                used.add(name)
        call = _INSTRUMENT_CALLS.get(instrument, f"`{instrument}`")
        out.append(f"\nAn application's own {call}, µs of CPU per call, by `OTEL_METRICS_EXEMPLAR_FILTER`:\n")
        headers = [f"`{f}`" + (" (default)" if f == "trace_based" else "") for f in filters] or ["µs"]
        out.append(table(("implementation and case", *headers), rows))

    # the comparison: one counter and one histogram per request, default filter, instruments made at import
    implementations = list(dict.fromkeys(impl for variants in instruments.values() for impl, _v in variants))
    rows = []
    for impl in implementations:
        pair = [[f"{impl}_{i}_trace_based{v}" for i in ("counter", "histogram")] for v in ("_proxy", "_proxy_attr")]
        if all(n in figures for n in pair[0]):
            fallback = "SDK" if impl == "sdk" else impl
            name = re.sub(r" *(counter|histogram).*$", "", descriptions.get(pair[0][0], fallback)) or fallback
            sums = [sum(figures[n] for n in p) if all(n in figures for n in p) else None for p in pair]
            rows.append((name, *(_us2(v) for v in sums)))
    prometheus = [[f"prometheus_{i}{v}" for i in ("counter", "histogram")] for v in ("", "_label")]
    if rows and all(n in figures for n in prometheus[0]):
        sums = [sum(figures[n] for n in p) if all(n in figures for n in p) else None for p in prometheus]
        rows.append(("prometheus_client multiprocess", *(_us2(v) for v in sums)))
    if len(rows) > 1:
        out.append(
            "\nOne `counter.add(1)` and one `histogram.record(v)` per request, the sums of the rows above (default "
            "exemplar filter, instruments made at import), µs of CPU:\n"
        )
        out.append(table(("implementation", "no attribute", "one attribute (label)"), rows))

    rest = [(descriptions.get(n, "—"), f"`{n}`", _us2(v) or str(v)) for n, v in figures.items() if n not in used]
    if rest:
        out.append("\nThe other cases, as `bench/request_path_inprocess.py` describes them (µs per request or call):\n")
        out.append(table(("case", "name", "µs"), rest, "llr"))
    return out


def section_request_path(results: dict[str, Any]) -> str:
    got = results.get("inprocess", {}).get("request_path")
    if not got:
        return "_Not measured in this run._"
    if "error" in got:
        return f"Not included: {got['error']}."
    figures = got.get("result")
    if not isinstance(figures, dict) or not figures:
        return "_`request_path_inprocess.measure()` returned no figures._"
    intro = (
        "`request_path_inprocess.measure()` (`bench/request_path_inprocess.py`), in process, without sockets: CPU "
        "time (`time.process_time`) of a loop, each case in a child process of its own, the cases compared timed "
        "in turns and the best round of each kept. The hook path is what gunicorn runs around a request, looked up "
        "in its configuration as gunicorn does, with bare gunicorn's defaults and with `python:otel_gunicorn.conf` "
        "and a worker runtime built by its own `post_worker_init`; the difference is otel_gunicorn's cost per "
        "request in that worker class. Compare within a row; instruction counts are under *What the profiles "
        "show*.\n"
    )
    return intro + "\n" + "\n".join(request_path_tables(figures, got.get("descriptions") or {}))


def section_proc_reads(results: dict[str, Any]) -> str:
    got = results.get("inprocess", {}).get("proc_reads")
    if not got:
        return "_Not measured in this run._"
    if "error" in got:
        return f"Not included: {got['error']}."
    r = got["result"]
    intro = (
        f"`proc_reads.measure()` (`bench/proc_reads.py`): {r['workers']} real child processes (interpreters with a "
        "socket and two threads each) read as the arbiter reads its workers every report interval, in process: "
        "`stat`, `statm` and the `fd` directory of each and of itself (on the channel thread, without the lock), "
        "then the merge under the lock and the merged view a scrape reads. CPU time (`time.process_time`) per "
        f"round, median and p95 of {r['rounds']} rounds; the share of a core is the median over the default "
        f"{r['interval_s']:g} s interval.\n"
    )
    rows = [
        ("the reads", ms(r["reads_ms"]["median"]), ms(r["reads_ms"]["p95"])),
        ("a whole round (reads, merge, merged view)", ms(r["round_ms"]["median"]), ms(r["round_ms"]["p95"])),
    ]
    return (
        intro
        + "\n"
        + table(("CPU per round, ms", "median", "p95"), rows, "lrr")
        + f"\n\nA round takes {r['round_wall_ms']:.2f} ms of wall time; at the default interval, "
        f"{r['core_pct_at_interval']:.3f} % of a core."
    )


METHOD = """\
Everything runs on this one machine, on 127.0.0.1, through the repository's `harness/` package (the server harness
the end-to-end tests use). The servers are real gunicorn masters started with `--no-control-socket` (gunicorn 25.1
and later); every load loop is bounded by a request count and a deadline, every server is stopped at the end, also
on failure or Ctrl-C.

**CPU per request** (sections 1, 4, 5). For each worker class, one server per configuration and application
variant, one worker each, all started side by side. Every thread of each server (arbiter, worker, otel_gunicorn's
exporter process) is pinned to CPU 1, `wrk -t1` and the Rotel collector to CPU 0 (`taskset`), so that load
generator and server do not compete. After a warm-up, in each round `wrk` runs against every server in turn, the
order rotating by one server per round. A server's figure for a round is the CPU time (utime + stime, from
`/proc/<pid>/stat`: all threads, 10 ms ticks) of its arbiter and worker during the `wrk` run divided by the
requests `wrk` counted; the tables give the median over the rounds, and compare only servers of the same run.
Throughput is given for context only: it moves with whatever else the machine does. The configurations:

* **(a) bare gunicorn**: no `-c`, no telemetry, hello world — the baseline of every *vs bare* column;
* **(b) otel_gunicorn, Prometheus mode**: `-c python:otel_gunicorn.conf`, defaults (a worker reports every 5 s);
* **(c) otel_gunicorn, OTLP mode**: the same with `OTEL_METRICS_EXPORTER=otlp`, pushing to a local
  [Rotel](https://github.com/streamfold/rotel) collector (`--exporter blackhole`);
* **(d) prometheus_client multiprocess mode**: `PROMETHEUS_MULTIPROC_DIR`, a `child_exit` hook calling
  `mark_process_dead` (`bench/apps/prom_conf.py`), the application recording with prometheus_client;
* **(e) OpenTelemetry's middleware and SDK per worker**: opentelemetry-instrumentation-wsgi's (asgi's, for ASGI
  workers) `OpenTelemetryMiddleware` around the application, and a MeterProvider with a
  PeriodicExportingMetricReader pushing OTLP to the same collector, built in `post_fork` in every worker
  (`bench/apps/naive_conf.py`): what users try first;
* **(f) otel_gunicorn with the slow-request check on**: (b) with `OTEL_GUNICORN_SLOW_REQUEST_SECONDS=10`, which no
  request reaches: what the check adds to every request (sync and gthread, hello world only).

Two application variants: *hello* records nothing; *recording* records one counter and one histogram (one
attribute each) per request, with the OpenTelemetry API for (b), (c) and (e), with prometheus_client for (d). Under
(b) and (c) every request is also measured by otel_gunicorn itself (its request metrics are always on), under (e)
by the middleware.

**Scrape** (section 2). ~100 series per worker: 24 counters × 4 attribute values and one histogram × 4
(`bench/apps/manyseries.py` with the OpenTelemetry API, `manyseries_prom.py` with prometheus_client), sync workers.
otel_gunicorn is scraped on its arbiter endpoint (with `OTEL_GUNICORN_METRICS_INTERVAL=1`, so reports arrive quickly);
prometheus_client on a small exporter process of its own (`bench/apps/prom_exporter.py`: a registry with a
`MultiProcessCollector`, `start_http_server`), as its documentation sets it up. Requests are sent until every
worker has served one, and the merged count is checked against the requests sent; then sequential scrapes (a new
connection each, the whole body read): median and p95 of the client's wall time, and the CPU time of the process
that renders the scrape net of its rate at rest. Recycles: `-w 4 --max-requests 1`, so every request makes a worker
exit and be replaced (counted from gunicorn's "Booting worker" lines); the same measurement fresh and after each
number of recycles, within a time budget (the table says how many were reached).

**Memory** (section 3): `VmRSS` and `RssAnon` from `/proc/<pid>/status`, `Pss` from `smaps_rollup` (shared pages
divided among their sharers: the closest to a process's real cost). **Channel** (section 4): the sync servers at
rest after their rounds, CPU rates over a window (from the threads' on-CPU nanoseconds), a worker under otel_gunicorn
minus a bare worker."""


def render(results: dict[str, Any]) -> str:
    quick = results.get("parameters", {}).get("quick")
    p = results.get("parameters", {})
    parts = [
        "# Benchmarks\n",
        "<!-- Generated by `make bench` (bench/run.py, bench/report.py): do not edit by hand. -->\n",
    ]
    if quick:
        parts.append(
            '!!! warning "Quick run"\n    This page was written by `bench/run.py --quick`: one short round per '
            "configuration and fewer worker classes, workers and recycles. It checks that the benchmark works; its "
            "figures are not a verdict. `make bench` writes the real page.\n"
        )
    parts.append(
        "What otel_gunicorn costs a gunicorn server, measured side by side with bare gunicorn, prometheus_client's "
        "multiprocess mode and OpenTelemetry's own middleware, by `make bench` "
        f"([bench/]({REPO}/bench/README.md) in the repository) on the machine below, in "
        f"{duration(results.get('elapsed_s', 0))}. Every raw number is in `bench/results/latest.json` after a run. "
        "The figures depend on the machine: compare the configurations of one run with each other, not with "
        "another machine's.\n"
    )
    parts += ["## Targets\n", section_targets(results) + "\n"]
    if FINDINGS.is_file():
        parts += ["## What the profiles show\n", FINDINGS.read_text().strip() + "\n"]
    parts += ["## The machine\n", section_machine(results) + "\n"]
    parts += ["## Method\n", METHOD + "\n"]
    parts += ["## 1. CPU per request\n", section_cpu(results) + "\n"]
    parts += ["## 2. Scrape time\n", section_scrape(results) + "\n"]
    parts += ["## 3. Memory\n", section_memory(results) + "\n"]
    parts += ["## 4. Channel cost at rest\n", section_channel(results) + "\n"]
    parts += ["## 5. OTLP mode\n", section_otlp(results) + "\n"]
    parts += ["## 6. Request path in process\n", section_request_path(results) + "\n"]
    parts += ["## 7. Worker health: the arbiter's /proc reads\n", section_proc_reads(results) + "\n"]
    parts += [
        "## Running it\n",
        "From a checkout, on Linux (`/proc`), as root or with `wrk` installed:\n\n"
        "```console\n"
        "$ make bench                                  # installs .[test,bench] and wrk, then bench/run.py\n"
        "$ .venv/bin/python bench/run.py --quick       # smoke run: a few minutes, writes the page marked as quick\n"
        "$ .venv/bin/python bench/run.py --package-root /tmp/old   # measure another otel_gunicorn checkout\n"
        "$ .venv/bin/python bench/run.py --report-only # rewrite this page from bench/results/latest.json\n"
        "```\n\n"
        f"This run: {p.get('rounds')} rounds per worker class, "
        f"{', '.join(f'{k} {v} s' for k, v in (p.get('seconds_per_round') or {}).items())} per round; "
        f"{p.get('idle_seconds')} s at rest; scrapes against {p.get('live_workers')} workers and after "
        f"{p.get('recycle_points')} recycles. Run-time errors: "
        + ("none." if not results.get("errors") else "; ".join(f"`{e}`" for e in results["errors"]) + ".")
        + "\n",
    ]
    return "\n".join(parts)


def write(results: dict[str, Any], page: Path = PAGE, plots: Path = PLOTS) -> list[Path]:
    """Write the page and its plots; remove plots this run did not draw. Returns the files written."""
    plots.mkdir(parents=True, exist_ok=True)
    drawn = []
    try:
        for name, draw in (
            ("cpu-per-request.png", plot_cpu),
            ("scrape-workers.png", plot_scrape_workers),
            ("scrape-recycles.png", plot_scrape_recycles),
            ("memory.png", plot_memory),
        ):
            if draw(results, plots / name):
                drawn.append(plots / name)
    except ImportError as exc:
        results.setdefault("errors", []).append(f"no plots: {exc} (pip install -e '.[bench]')")
    text = render(results)
    for stale in plots.glob("*.png"):
        if stale not in drawn:
            stale.unlink()
    for path in list(drawn):
        if f"benchmarks/{path.name}" not in text:
            path.unlink()
            drawn.remove(path)
    # a section whose plot was not drawn must not link to it
    lines = [
        line
        for line in text.splitlines()
        if not (
            line.startswith("![")
            and "](benchmarks/" in line
            and not (plots / line.split("](benchmarks/")[1].rstrip(")")).is_file()
        )
    ]
    page.write_text("\n".join(lines).rstrip() + "\n")
    return [page, *drawn]


def summary(results: dict[str, Any]) -> str:
    """The console's short version: targets, then the CPU headline."""
    lines = []
    for t in analysis.targets(results):
        verdict = t.verdict.split(":")[0] if t.judged else "reported"
        lines.append(f"{verdict:>11}  {t.label}: {t.measured} (target {t.target}; {t.detail})")
    for key, cls in classes(results).items():
        s = cls["setups"]
        cells = ", ".join(f"{k} {us(v.get('us_per_request'))} µs ({pct(v.get('overhead_pct'))})" for k, v in s.items())
        lines.append(f"cpu {key}: {cells}")
    return "\n".join(lines)
