"""`make demo`: the example app under gunicorn with 2 gthread workers, a little traffic, and the endpoint to look at.

Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_PORT = int(os.environ.get("DEMO_PORT", "8000"))
METRICS_PORT = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))


def wait_for(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: {url} did not answer within {timeout:.0f} s") from exc
            time.sleep(0.2)


def main() -> None:
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME", "otel-gunicorn-demo"),
        "OTEL_GUNICORN_METRICS_INTERVAL": os.environ.get("OTEL_GUNICORN_METRICS_INTERVAL", "1"),
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(METRICS_PORT),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:otel_gunicorn.conf",
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        "2",
        "--bind",
        f"127.0.0.1:{APP_PORT}",
        "examples.app:app",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{APP_PORT}/")
        wait_for(f"http://127.0.0.1:{METRICS_PORT}/metrics")
        print(f"\nThe app:     http://127.0.0.1:{APP_PORT}/")
        print(f"The metrics: http://127.0.0.1:{METRICS_PORT}/metrics")
        print(f"Try:         curl -s http://127.0.0.1:{METRICS_PORT}/metrics | grep ^app_")
        print("Sending a request every 0.2 s; Ctrl-C stops.\n", flush=True)
        while server.poll() is None:
            for path in ("/", "/cart", "/checkout"):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{APP_PORT}{path}", timeout=5).read()
                except OSError as exc:
                    print(f"demo: request failed: {exc}", file=sys.stderr)
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(15)


if __name__ == "__main__":
    main()
