"""The real OTLP collector for end-to-end tests: Rotel (PyPI ``rotel``), and a reader for what it prints.

Rotel's ``--debug-log ... --debug-log-verbosity detailed`` prints every received batch in the OpenTelemetry
Collector's debug-exporter text format; :func:`parse` turns that into data points and spans to assert on.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
from pathlib import Path

import rotel

from tests.e2e.servers import free_port, stop_process, wait_until

BINARY = Path(rotel.__file__).resolve().parent / "rotel-agent"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ATTRIBUTE = re.compile(r"^\s*-> ([^:]+): \w+\((.*)\)$")


@dataclasses.dataclass
class Point:
    metric: str
    attributes: dict[str, str]
    value: float
    resource: dict[str, str]


@dataclasses.dataclass
class Span:
    trace_id: str
    parent_id: str
    span_id: str
    name: str
    kind: str
    resource: dict[str, str]
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


def parse(text: str) -> tuple[list[Point], list[Span]]:
    """Data points (numbers and histogram counts) and spans from Rotel's detailed debug output, in arrival order."""
    points: list[Point] = []
    spans: list[Span] = []
    resource: dict[str, str] = {}
    section = ""
    metric = ""
    attributes: dict[str, str] = {}
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        if line.startswith(("ResourceMetrics #", "ResourceSpans #", "ResourceLogs #")):
            resource, section = {}, "resource"
        elif line == "Resource attributes:":
            section = "resource"
        elif line.startswith(("Data point attributes:", "Attributes:")):
            section, attributes = "attributes", {}
            if spans and line == "Attributes:":
                attributes = spans[-1].attributes
        elif line.startswith(("NumberDataPoints #", "HistogramDataPoints #")):
            attributes = {}
        elif (match := _ATTRIBUTE.match(line)) and section in ("resource", "attributes"):
            key, value = match.group(1).strip(), match.group(2)
            (resource if section == "resource" else attributes)[key] = value
        elif line.strip().startswith("-> Name:"):
            metric, section = line.split(":", 1)[1].strip(), "descriptor"
        elif line.startswith(("Value:", "Count:")):
            points.append(Point(metric, dict(attributes), float(line.split(":", 1)[1]), dict(resource)))
        elif line.strip().startswith("Trace ID"):
            spans.append(Span(line.split(":", 1)[1].strip(), "", "", "", "", dict(resource)))
            section = "span"
        elif spans and section == "span" and ":" in line:
            key, value = (part.strip() for part in line.split(":", 1))
            field = {"Parent ID": "parent_id", "ID": "span_id", "Name": "name", "Kind": "kind"}.get(key)
            if field:
                setattr(spans[-1], field, value)
    return points, spans


class Rotel:
    """A Rotel collector on loopback ports, printing what it receives to a log file."""

    def __init__(self, tmp_path: Path, grpc_port: int | None = None, http_port: int | None = None) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.log_path = tmp_path / f"rotel-{self.http_port}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                str(BINARY),
                "start",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.http_port}",
                "--exporter",
                "blackhole",
                "--debug-log",
                "metrics",
                "--debug-log",
                "traces",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: "Starting Rotel" in self.text() or self.process.poll() is not None, 15, what="rotel")
        assert self.process.poll() is None, self.text()

    def endpoint(self, protocol: str) -> str:
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return f"http://127.0.0.1:{port}"

    def text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def points(self, metric: str) -> list[Point]:
        return [p for p in parse(self.text())[0] if p.metric == metric]

    def spans(self) -> list[Span]:
        return parse(self.text())[1]

    def stop(self) -> None:
        stop_process(self.process, grace=10.0)
        self._log.close()
