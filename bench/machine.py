"""The machine, the software and the commit a run measured: for the page and for ``results/latest.json``."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: distributions whose versions the page shows (those missing are left out)
PACKAGES = (
    "gunicorn",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-prometheus",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-instrumentation-wsgi",
    "opentelemetry-instrumentation-asgi",
    "prometheus_client",
    "gevent",
    "uvicorn",
    "uvicorn-worker",
    "rotel",
    "matplotlib",
)


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        return None
    return None


def _git(root: Path, *args: str) -> str | None:
    try:
        run = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def _version_of(package_root: Path) -> str | None:
    """otel_gunicorn's version as written in the measured checkout (it need not be the installed one)."""
    try:
        text = (package_root / "otel_gunicorn" / "_version.py").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("__version__") and "=" in line:
            return line.split("=", 1)[1].strip().strip("\"'")
    return None


def _wrk_version() -> str | None:
    binary = shutil.which("wrk")
    if binary is None:
        return None
    run = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    first = (run.stdout or run.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else None


def describe(package_root: Path) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    mem_kib = _first("/proc/meminfo", "MemTotal")
    dirty = _git(package_root, "status", "--porcelain", "--", "otel_gunicorn")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "memory_gib": round(int(mem_kib.split()[0]) / 1024 / 1024, 1) if mem_kib else None,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
        "wrk": _wrk_version(),
        "otel_gunicorn": _version_of(package_root),
        "package_root": str(package_root),
        "git_commit": _git(package_root, "rev-parse", "HEAD"),
        "git_commit_subject": _git(package_root, "log", "-1", "--format=%s"),
        "package_modified_since_commit": None if dirty is None else bool(dirty),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
