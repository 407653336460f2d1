"""Figures derived from a run's raw results, and the targets of issue 13 judged on them.

Every target gives the measured value, the target, whether it is met and by how much. A target whose figure the
run did not produce (a phase skipped or failed, 1000 recycles not reached in time) is ``None``: not judged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import configs

#: the figures the targets read
OVERHEAD_TARGET_PCT = 5.0
#: worker classes whose CPU overhead (and app-recording cost) the issue judges; the overhead of the others is
#: reported in the targets table, not judged (issue 13: "for sync and gthread (and reported for gevent and asgi)")
JUDGED_CLASSES = ("sync", "gthread")
REPORTED_CLASSES = ("gevent", "asgi")
SCRAPE_TARGET_MS = 5.0
SCRAPE_WORKERS = 8
RECYCLES_TARGET = 1000
#: "no growth": the median after the recycles within this share (or this many ms, whichever is larger) of the fresh one
GROWTH_TOLERANCE = 0.10
GROWTH_FLOOR_MS = 0.5
CHEAPER_TARGET = 10.0
RSS_TARGET_MB = 15.0
CHANNEL_TARGET_PCT = 0.5
#: issue 23: the arbiter's /proc reads of 32 workers, at the default report interval
PROC_READS_TARGET_PCT = 0.5


@dataclasses.dataclass
class Target:
    label: str
    measured: str
    target: str
    met: bool | None
    detail: str
    #: False: a figure the issue asks to report, not to judge (``met`` is then None)
    judged: bool = True

    @property
    def verdict(self) -> str:
        if not self.judged:
            return f"reported, not judged: {self.detail}"
        if self.met is None:
            return f"not judged: {self.detail}"
        return f"{'met' if self.met else 'missed'}: {self.detail}"


def setup(results: dict[str, Any], worker_class: str, key: str) -> dict[str, Any] | None:
    cls = results.get("cpu", {}).get("classes", {}).get(worker_class)
    if not cls or "setups" not in cls:
        return None
    return cls["setups"].get(key)


def memory_overhead(results: dict[str, Any], worker_class: str = "sync", key: str = "otel/hello") -> dict | None:
    """Median worker VmRSS/Pss of ``key`` minus bare gunicorn's, MiB."""
    cls = results.get("cpu", {}).get("classes", {}).get(worker_class)
    if not cls or not cls.get("memory"):
        return None
    mem = cls["memory"]
    if key not in mem or "bare/hello" not in mem:
        return None

    def worker(k: str, field: str) -> float:
        values = sorted(w[field] for w in mem[k]["workers"])
        return values[len(values) // 2]

    return {
        field: round(worker(key, field) - worker("bare/hello", field), 2)
        for field in ("rss_mib", "rss_anon_mib", "pss_mib")
    }


def channel_cost(results: dict[str, Any], worker_class: str = "sync", key: str = "otel/hello") -> dict | None:
    """A worker's CPU at rest under ``key`` minus a bare worker's (% of one core), and the same for the arbiter."""
    cls = results.get("cpu", {}).get("classes", {}).get(worker_class)
    idle = (cls or {}).get("idle") or {}
    ours, bare = idle.get(key), idle.get("bare/hello")
    if not ours or not bare or not ours.get("valid") or not bare.get("valid"):
        return None
    return {
        "worker_pct": round(ours["worker_pct"] - bare["worker_pct"], 3),
        "arbiter_pct": round(ours["arbiter_pct"] - bare["arbiter_pct"], 3),
        "seconds": ours["seconds"],
    }


def _overhead_target(results: dict[str, Any], worker_class: str) -> Target:
    label = f"{worker_class}: otel_gunicorn, nothing recorded, CPU per request over bare gunicorn"
    row, bare = setup(results, worker_class, "otel/hello"), setup(results, worker_class, "bare/hello")
    if not row or row.get("overhead_pct") is None or not bare:
        return Target(label, "—", f"≤ +{OVERHEAD_TARGET_PCT:g} %", None, "not measured in this run")
    value = row["overhead_pct"]
    measured = f"{value:+.1f} % ({row['us_per_request']:.0f} against {bare['us_per_request']:.0f} µs)"
    gap = value - OVERHEAD_TARGET_PCT
    met = gap <= 0
    detail = f"{-gap:.1f} points to spare" if met else f"by {gap:.1f} points"
    return Target(label, measured, f"≤ +{OVERHEAD_TARGET_PCT:g} %", met, detail)


def _overhead_reported(results: dict[str, Any], worker_class: str) -> Target:
    """The same figure as ``_overhead_target`` for a class the issue asks to report, not to judge."""
    known = configs.WORKER_CLASSES.get(worker_class)
    name = known.label if known else worker_class
    label = f"{name}: otel_gunicorn, nothing recorded, CPU per request over bare gunicorn"
    row, bare = setup(results, worker_class, "otel/hello"), setup(results, worker_class, "bare/hello")
    if not row or row.get("overhead_pct") is None or not bare:
        return Target(label, "—", "reported", None, "not measured in this run", judged=False)
    value = row["overhead_pct"]
    measured = f"{value:+.1f} % ({row['us_per_request']:.0f} against {bare['us_per_request']:.0f} µs)"
    gap = value - OVERHEAD_TARGET_PCT
    where = f"{gap:.1f} points above" if gap > 0 else f"{-gap:.1f} points within"
    detail = f"{where} the +{OVERHEAD_TARGET_PCT:g} % judged for sync and gthread"
    return Target(label, measured, "reported", None, detail, judged=False)


def _slow_check_reported(results: dict[str, Any], worker_class: str) -> Target:
    """What ``OTEL_GUNICORN_SLOW_REQUEST_SECONDS`` adds to a request that never reaches it (issue 22: unchanged within
    noise), the two otel_gunicorn setups of one run side by side."""
    label = f"{worker_class}: slow-request check on (no request slow), CPU per request against it off"
    on, off = setup(results, worker_class, "slow/hello"), setup(results, worker_class, "otel/hello")
    if not on or not off or not on.get("us_per_request") or not off.get("us_per_request"):
        return Target(label, "—", "reported", None, "not measured in this run", judged=False)
    a, b = on["us_per_request"], off["us_per_request"]
    measured = f"{a:.0f} against {b:.0f} µs per request ({100 * (a / b - 1):+.1f} %)"
    return Target(label, measured, "reported", None, "a comparison per request (gthread: also its thread's id)", False)


def _recording_target(results: dict[str, Any], worker_class: str) -> Target:
    label = (
        f"{worker_class}: app recording a counter + a histogram, otel_gunicorn against prometheus_client multiprocess"
    )
    ours, theirs = setup(results, worker_class, "otel/recording"), setup(results, worker_class, "prom/recording")
    if not ours or not theirs or not ours.get("us_per_request") or not theirs.get("us_per_request"):
        return Target(label, "—", "≤ prometheus_client", None, "not measured in this run")
    a, b = ours["us_per_request"], theirs["us_per_request"]
    diff = 100 * (a / b - 1)
    measured = f"{a:.0f} against {b:.0f} µs per request ({diff:+.1f} %)"
    met = a <= b
    detail = f"{-diff:.1f} % cheaper" if met else f"{diff:.1f} % more CPU per request"
    return Target(label, measured, "≤ prometheus_client", met, detail)


def _recycle_rows(results: dict[str, Any], system: str) -> list[dict[str, Any]]:
    rec = results.get("scrape", {}).get("recycles") or {}
    rows = rec.get(system) if isinstance(rec, dict) else None
    return rows if isinstance(rows, list) else []


def _scrape_targets(results: dict[str, Any]) -> list[Target]:
    targets = []
    live = (results.get("scrape", {}).get("live") or {}).get("otel_gunicorn") or {}
    row = live.get(str(SCRAPE_WORKERS))
    label = f"Scrape, {SCRAPE_WORKERS} workers × ~100 series: median"
    if row:
        value = row["median_ms"]
        gap = value - SCRAPE_TARGET_MS
        detail = f"{-gap:.2f} ms to spare" if gap <= 0 else f"by {gap:.2f} ms ({value / SCRAPE_TARGET_MS:.1f}×)"
        targets.append(Target(label, f"{value:.2f} ms", f"≤ {SCRAPE_TARGET_MS:g} ms", gap <= 0, detail))
    else:
        targets.append(Target(label, "—", f"≤ {SCRAPE_TARGET_MS:g} ms", None, "not measured in this run"))

    ours = _recycle_rows(results, "otel_gunicorn")
    theirs = _recycle_rows(results, "prometheus_client")
    label = f"Scrape after {RECYCLES_TARGET} recycles: no growth"
    if len(ours) >= 2:
        fresh, after = ours[0], ours[-1]
        allowed = max(fresh["median_ms"] * (1 + GROWTH_TOLERANCE), fresh["median_ms"] + GROWTH_FLOOR_MS)
        grown = after["median_ms"] > allowed or after["samples"] > fresh["samples"]
        measured = (
            f"{fresh['median_ms']:.2f} ms → {after['median_ms']:.2f} ms after {after['recycles']} recycles; "
            f"{fresh['samples']} → {after['samples']} samples"
        )
        target = f"≤ {allowed:.2f} ms, samples not growing"
        if after["recycles"] < RECYCLES_TARGET:
            targets.append(Target(label, measured, target, None, f"only {after['recycles']} recycles reached in time"))
        else:
            change = 100 * (after["median_ms"] / fresh["median_ms"] - 1)
            detail = f"{change:+.0f} % median" + (", more samples" if after["samples"] > fresh["samples"] else "")
            targets.append(Target(label, measured, target, not grown, detail))
    else:
        targets.append(Target(label, "—", "no growth", None, "not measured in this run"))

    label = f"Scrape after {RECYCLES_TARGET} recycles: cheaper than prometheus_client multiprocess"
    if ours and theirs and len(ours) == len(theirs):
        a, b = ours[-1], theirs[-1]
        ratio = b["median_ms"] / a["median_ms"] if a["median_ms"] else float("inf")
        measured = (
            f"{a['median_ms']:.2f} ms against {b['median_ms']:.1f} ms ({ratio:.0f}×; "
            f"after {a['recycles']} and {b['recycles']} recycles)"
        )
        if min(a["recycles"], b["recycles"]) < RECYCLES_TARGET:
            targets.append(
                Target(label, measured, f"≥ {CHEAPER_TARGET:g}×", None, "fewer recycles than the target reached")
            )
        else:
            met = ratio >= CHEAPER_TARGET
            detail = (
                f"{ratio / CHEAPER_TARGET:.1f}× the target" if met else f"{ratio:.1f}× instead of {CHEAPER_TARGET:g}×"
            )
            targets.append(Target(label, measured, f"≥ {CHEAPER_TARGET:g}×", met, detail))
    else:
        targets.append(Target(label, "—", f"≥ {CHEAPER_TARGET:g}×", None, "not measured in this run"))
    return targets


def targets(results: dict[str, Any]) -> list[Target]:
    measured = list(results.get("cpu", {}).get("classes", {}))
    reported = [*REPORTED_CLASSES, *(c for c in measured if c not in JUDGED_CLASSES and c not in REPORTED_CLASSES)]
    found = [
        *(_overhead_target(results, c) for c in JUDGED_CLASSES),
        *(_overhead_reported(results, c) for c in reported),
        *(_recording_target(results, c) for c in JUDGED_CLASSES),
        *(_slow_check_reported(results, c) for c in JUDGED_CLASSES),
        *_scrape_targets(results),
    ]
    mem = memory_overhead(results)
    label = "Worker RSS overhead (sync, otel_gunicorn − bare)"
    if mem:
        mb = mem["rss_mib"] * 1.048576
        gap = mb - RSS_TARGET_MB
        detail = f"{-gap:.1f} MB to spare" if gap <= 0 else f"by {gap:.1f} MB"
        found.append(
            Target(label, f"{mb:.1f} MB ({mem['rss_mib']:.1f} MiB)", f"≤ {RSS_TARGET_MB:g} MB", gap <= 0, detail)
        )
    else:
        found.append(Target(label, "—", f"≤ {RSS_TARGET_MB:g} MB", None, "not measured in this run"))
    channel = channel_cost(results)
    label = "Channel: a worker's reporting at the default interval (5 s), % of a core"
    if channel:
        value = channel["worker_pct"]
        gap = value - CHANNEL_TARGET_PCT
        detail = f"{-gap:.2f} points to spare" if gap <= 0 else f"by {gap:.2f} points"
        found.append(
            Target(label, f"{value:.2f} % (over {channel['seconds']:.0f} s at rest)", "≤ 0.5 %", gap <= 0, detail)
        )
    else:
        found.append(Target(label, "—", f"≤ {CHANNEL_TARGET_PCT:g} %", None, "not measured in this run"))
    found.append(_proc_reads_target(results))
    return found


def _proc_reads_target(results: dict[str, Any]) -> Target:
    got = (results.get("inprocess", {}).get("proc_reads") or {}).get("result")
    workers = got["workers"] if got else 32
    label = f"Worker health: the arbiter's /proc reads of {workers} workers at the default interval (5 s), % of a core"
    target = f"≤ {PROC_READS_TARGET_PCT:g} %"
    if not got:
        return Target(label, "—", target, None, "not measured in this run")
    value = got["core_pct_at_interval"]
    gap = value - PROC_READS_TARGET_PCT
    detail = f"{-gap:.2f} points to spare" if gap <= 0 else f"by {gap:.2f} points"
    measured = f"{value:.3f} % ({got['round_ms']['median']:.2f} ms of CPU per round)"
    return Target(label, measured, target, gap <= 0, detail)
