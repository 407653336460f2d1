"""Figures measured inside one process, by modules other engineers own: imported defensively, each in a child
process of its own (with a time limit), so that a module missing, failing or hanging costs the run one section,
never the whole page.

* ``bench/scrape_inprocess.py``: ``measure(workers, series_per_worker, scrapes[, recycles]) -> dict``, the arbiter's
  ``/metrics`` WSGI call without sockets or other processes;
* ``bench/request_path_inprocess.py``: ``measure() -> dict``, µs per request on the hook path (as gunicorn calls
  it, bare and otel_gunicorn, per worker class) and the application boundary, and an application's own counter and
  histogram against prometheus_client's ``inc()``/``observe()``; kept with each case's description (``CASES``);
* ``bench/proc_reads.py``: ``measure(workers, rounds) -> dict``, the arbiter's reads of its workers' ``/proc`` (worker
  health) against real child processes: CPU per round, and the share of a core at the default report interval.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

_CHILD = """
import json, sys
sys.path[:0] = [{bench!r}, {package_root!r}, {root!r}]
import {module} as m
result = m.measure({args})
{post}
sys.stdout.write("\\n@@RESULT@@" + json.dumps(result, default=str))
"""

#: for ``request_path_inprocess``: each case's own description (its ``CASES``) next to the figures, so the page
#: labels a case it does not know yet by what its module says it is
_DESCRIBED = """
def _description(case):
    return case[0] if isinstance(case, tuple) and case and isinstance(case[0], str) else str(case)
result = {
    "figures": result,
    "descriptions": {name: _description(case) for name, case in getattr(m, "CASES", {}).items()},
}
"""


def available(module: str) -> bool:
    return (BENCH / f"{module}.py").is_file()


def call(module: str, args: str, package_root: Path, timeout: float, post: str = "") -> dict[str, Any]:
    """``module.measure(args)`` in a child process: ``{"result": ...}`` or ``{"error": "..."}``. ``post``: code run
    in the child after ``measure``, which may replace ``result``."""
    if not available(module):
        return {"error": f"bench/{module}.py does not exist"}
    code = _CHILD.format(
        bench=str(BENCH), package_root=str(package_root), root=str(ROOT), module=module, args=args, post=post
    )
    try:
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"bench/{module}.py: measure({args}) did not finish within {timeout:.0f} s"}
    marker = run.stdout.rfind("@@RESULT@@")
    if run.returncode != 0 or marker < 0:
        tail = (run.stderr or run.stdout).strip().splitlines()[-5:]
        return {"error": f"bench/{module}.py: measure({args}) failed ({run.returncode}): " + " | ".join(tail)}
    try:
        return {"result": json.loads(run.stdout[marker + len("@@RESULT@@") :])}
    except ValueError as exc:
        return {"error": f"bench/{module}.py: unreadable result ({exc})"}


def scrape(workers: list[int], scrapes: int, recycles: int, package_root: Path, timeout: float) -> dict[str, Any]:
    """In-process scrape figures for each live worker count (100 series each), then 8 workers after ``recycles``."""
    if not available("scrape_inprocess"):
        return {"error": "bench/scrape_inprocess.py does not exist"}
    out: dict[str, Any] = {"series_per_worker": 100, "scrapes": scrapes, "live": {}, "recycled": None}
    for n in workers:
        got = call("scrape_inprocess", f"{n}, 100, {scrapes}", package_root, timeout)
        if "error" in got:
            return {**out, "error": got["error"]}
        out["live"][str(n)] = got["result"]
    if recycles:
        got = call("scrape_inprocess", f"8, 100, {scrapes}, recycles={recycles}", package_root, timeout)
        out["recycled"] = {"workers": 8, "recycles": recycles, **got}
    return out


def request_path(package_root: Path, timeout: float) -> dict[str, Any]:
    """``request_path_inprocess.measure()``: ``{"result": {case: µs}, "descriptions": {case: text}}`` (every case
    the module has, whether ``measure()`` returned it or not) or ``{"error": "..."}``."""
    got = call("request_path_inprocess", "", package_root, timeout, post=_DESCRIBED)
    if "result" not in got:
        return got
    return {"result": got["result"]["figures"], "descriptions": got["result"]["descriptions"]}


def proc_reads(workers: int, rounds: int, package_root: Path, timeout: float) -> dict[str, Any]:
    """``proc_reads.measure(workers, rounds)``: ``{"result": {...}}`` or ``{"error": "..."}``."""
    return call("proc_reads", f"{workers}, {rounds}", package_root, timeout)
