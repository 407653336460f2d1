"""otel_gunicorn benchmarks: CPU per request, scrape time, memory, channel cost, OTLP mode; the published page.

Run with ``make bench`` (or ``.venv/bin/python bench/run.py``; ``--quick`` for a smoke run). Starts real gunicorn
masters on 127.0.0.1 with free ports (through the repository's ``harness`` package, as the end-to-end tests do),
writes every raw number to ``bench/results/latest.json`` and the page ``docs/benchmarks.md`` with its plots in
``docs/benchmarks/``. Every load loop is bounded by a request count and a deadline, and every server is stopped at
the end, also on failure or Ctrl-C. See ``bench/README.md``.

The phases live in modules of their own: ``configs.py`` (what is compared), ``cpu.py`` (CPU per request, channel
cost at rest, memory), ``scrape.py`` (scrape time against workers and recycles), ``inprocess.py`` (the in-process
modules other engineers own), ``analysis.py`` (derived figures and targets), ``report.py`` (page and plots).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT))  # the harness package and the bench modules, from the repository's root

from bench import configs, cpu, inprocess, machine, report, scrape  # noqa: E402

PHASES = ("cpu", "scrape", "inprocess")

FULL: dict[str, Any] = {
    "quick": False,
    "classes": ["sync", "gthread", "gevent", "asgi", "uvicorn"],
    "rounds": 7,  # a 2-core shared VM moves a single round by ±15 %: medians of 7 hold still better than of 5
    "warmup": True,  # one second of wrk against every server before the rounds
    # the judged classes get longer rounds: finer figures where the targets are
    "seconds_per_round": {"sync": 3, "gthread": 3, "gevent": 2, "asgi": 2, "uvicorn": 2},
    "idle_seconds": 30,
    "live_workers": [1, 4, 8, 16],
    "scrapes": 50,
    "scrape_budget_s": 10,
    "recycle_points": [0, 100, 1000],
    "recycle_deadline_s": 240,
    "inprocess_scrapes": 100,
    "inprocess_recycles": 1000,
    "inprocess_timeout_s": 300,
    "proc_read_workers": 32,
    "proc_read_rounds": 200,
}
QUICK: dict[str, Any] = {
    **FULL,
    "quick": True,
    "classes": ["sync", "gthread"],
    "rounds": 1,
    "warmup": False,
    "seconds_per_round": {"sync": 1, "gthread": 1},
    "idle_seconds": 5,
    "live_workers": [1, 8],
    "scrapes": 10,
    "scrape_budget_s": 3,
    "recycle_points": [0, 20],
    "recycle_deadline_s": 20,
    "inprocess_scrapes": 20,
    "inprocess_recycles": 100,
    "inprocess_timeout_s": 120,
    "proc_read_rounds": 20,
}

_started = time.monotonic()


def log(message: str) -> None:
    elapsed = int(time.monotonic() - _started)
    print(f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def _error(results: dict[str, Any], where: str, exc: BaseException) -> dict[str, str]:
    text = f"{type(exc).__name__}: {exc}"
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    results.setdefault("errors", []).append(f"{where}: {first}")
    log(f"{where} failed: {text[:2000]}")
    return {"error": first, "detail": text[:5000]}


def run_cpu(results: dict[str, Any], p: dict[str, Any], workdir: Path, package_root: Path) -> None:
    results["cpu"] = {"classes": {}}
    for key in p["classes"]:
        worker_class = configs.WORKER_CLASSES[key]
        setups = configs.setups(worker_class, list(configs.CONFIGURATIONS), list(configs.VARIANTS))
        log(f"cpu: {worker_class.label}, {len(setups)} servers, {p['rounds']} rounds")
        try:
            results["cpu"]["classes"][key] = cpu.run_class(
                worker_class,
                setups,
                workdir,
                rounds=p["rounds"],
                seconds=p["seconds_per_round"].get(key, 2),
                idle_seconds=p["idle_seconds"] if key == "sync" else 0,
                warmup=p["warmup"],
                package_root=package_root,
                log=log,
            )
        except Exception as exc:  # noqa: BLE001 - one worker class failing costs its section, not the run
            results["cpu"]["classes"][key] = _error(results, f"cpu {key}", exc)


def run_scrape(results: dict[str, Any], p: dict[str, Any], workdir: Path, package_root: Path) -> None:
    results["scrape"] = {}
    try:
        results["scrape"]["live"] = scrape.live_workers(
            workdir, p["live_workers"], p["scrapes"], p["scrape_budget_s"], package_root, log
        )
    except Exception as exc:  # noqa: BLE001
        results["scrape"]["live"] = _error(results, "scrape against live workers", exc)
    try:
        results["scrape"]["recycles"] = scrape.recycles(
            workdir, p["recycle_points"], p["scrapes"], p["scrape_budget_s"], package_root, log, p["recycle_deadline_s"]
        )
    except Exception as exc:  # noqa: BLE001
        results["scrape"]["recycles"] = _error(results, "scrape against recycles", exc)


def run_inprocess(results: dict[str, Any], p: dict[str, Any], package_root: Path) -> None:
    results["inprocess"] = {
        "scrape": inprocess.scrape(
            p["live_workers"], p["inprocess_scrapes"], p["inprocess_recycles"], package_root, p["inprocess_timeout_s"]
        ),
        "request_path": inprocess.request_path(package_root, p["inprocess_timeout_s"]),
        "proc_reads": inprocess.proc_reads(
            p["proc_read_workers"], p["proc_read_rounds"], package_root, p["inprocess_timeout_s"]
        ),
    }
    for key, got in results["inprocess"].items():
        if got.get("error"):
            log(f"inprocess {key}: {got['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (a few minutes): still writes the page")
    parser.add_argument(
        "--package-root",
        type=Path,
        default=ROOT,
        help="directory holding the otel_gunicorn package to measure (default: this checkout), e.g. an older export",
    )
    parser.add_argument(
        "--classes", help=f"comma-separated worker classes (default: all of {list(configs.WORKER_CLASSES)})"
    )
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated phases (default: {PHASES})")
    parser.add_argument("--report-only", action="store_true", help="rewrite the page from results/latest.json")
    parser.add_argument("--no-page", action="store_true", help="leave docs/benchmarks.md alone")
    options = parser.parse_args(argv)

    if options.report_only:
        saved = json.loads((RESULTS / "latest.json").read_text())
        for path in report.write(saved):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0

    package_root = options.package_root.resolve()
    if not (package_root / "otel_gunicorn" / "conf.py").is_file():
        parser.error(f"{package_root} holds no otel_gunicorn package")
    p = dict(QUICK if options.quick else FULL)
    if options.classes:
        p["classes"] = [c.strip() for c in options.classes.split(",") if c.strip()]
        unknown = set(p["classes"]) - set(configs.WORKER_CLASSES)
        if unknown:
            parser.error(f"unknown worker classes {sorted(unknown)}")
    phases = [x.strip() for x in options.phases.split(",") if x.strip()]

    results: dict[str, Any] = {"parameters": p, "machine": machine.describe(package_root), "errors": []}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="otel-gunicorn-bench-") as tmp:
        workdir = Path(tmp)
        for phase in phases:
            started = time.monotonic()
            if phase == "cpu":
                run_cpu(results, p, workdir, package_root)
            elif phase == "scrape":
                run_scrape(results, p, workdir, package_root)
            elif phase == "inprocess":
                run_inprocess(results, p, package_root)
            else:
                parser.error(f"unknown phase {phase!r} (known: {PHASES})")
            timings[phase] = round(time.monotonic() - started, 1)
            log(f"{phase}: done in {timings[phase]} s")
    results["phase_seconds"] = timings
    results["elapsed_s"] = round(time.monotonic() - _started, 1)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    if not options.no_page:
        for path in report.write(results):
            print(f"wrote {path.relative_to(ROOT)}")
    print(report.summary(results))
    print(f"\n{results['elapsed_s']} s; raw numbers in {(RESULTS / 'latest.json').relative_to(ROOT)}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
