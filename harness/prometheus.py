"""The real Prometheus server (Debian package ``prometheus``) scraping given targets every second, and promtool.

Runs in the test process; Prometheus keeps its TSDB in the test's directory. Hazards: the binaries come from the
system, not the venv (``make test`` installs the package); a missing one fails the test with that hint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from harness import net
from harness.process import LoggedProcess
from harness.waiting import wait_until


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name!r} is missing: make test installs the Debian package 'prometheus'")
    return found


class Prometheus(LoggedProcess):
    """A Prometheus server on a free loopback port, ready when started, scraping ``targets`` as job ``gunicorn``."""

    def __init__(self, workdir: Path, targets: list[str], flags: tuple[str, ...] = ()) -> None:
        """``flags``: more command-line flags, e.g. ``("--enable-feature=exemplar-storage",)``."""
        binary = _binary("prometheus")
        self.port = net.free_port()
        config = workdir / f"prometheus-{self.port}.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: gunicorn\n    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )
        super().__init__(
            "prometheus",
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / f'tsdb-{self.port}'}",
                f"--web.listen-address={net.LOOPBACK}:{self.port}",
                *flags,
            ],
            workdir / f"prometheus-{self.port}.log",
        )
        self.ready_or_stop(
            lambda: wait_until(
                self._ready_status, 30, what="prometheus to be ready", until=lambda status: status == 200
            )
        )

    def _ready_status(self) -> int:
        self.assert_running()
        return net.get(self.port, "/-/ready", timeout=2)[0]

    def query(self, promql: str) -> list[dict]:
        """The result vector of an instant PromQL query."""
        url = f"http://{net.LOOPBACK}:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def query_exemplars(self, promql: str, start: float, end: float) -> list[dict]:
        """The result of ``/api/v1/query_exemplars`` (needs ``--enable-feature=exemplar-storage``): per series, its
        ``seriesLabels`` and ``exemplars`` (``labels``, ``value``, ``timestamp``)."""
        query = urllib.parse.urlencode({"query": promql, "start": start, "end": end})
        url = f"http://{net.LOOPBACK}:{self.port}/api/v1/query_exemplars?{query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return list(body["data"] or [])


def promtool_check(exposition: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` of an exposition: returncode 0 and no output when it finds nothing wrong."""
    return subprocess.run(
        [_binary("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30
    )
