"""The real OTLP collector for end-to-end tests: Rotel (PyPI ``rotel``), and a reader for what it prints.

Rotel's ``--debug-log ... --debug-log-verbosity detailed`` prints every received batch in the OpenTelemetry
Collector's debug-exporter text format; :func:`parse` turns that into data points and spans, :func:`parse_logs` into log
records, to assert on. Hazards: the binary ships inside the ``rotel`` wheel (a test extra), so import this module only
where a collector is needed.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import rotel

from harness import net
from harness.process import LoggedProcess
from harness.waiting import LogText, wait_until

BINARY = Path(rotel.__file__).resolve().parent / "rotel-agent"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ATTRIBUTE = re.compile(r"^\s*-> ([^:]+): \w+\((.*)\)$")
#: per signal, the SDK setting that makes it leave the server quickly
_QUICK = {
    "metrics": {"OTEL_METRIC_EXPORT_INTERVAL": "1000"},
    "traces": {"OTEL_BSP_SCHEDULE_DELAY": "200"},
    "logs": {"OTEL_BLRP_SCHEDULE_DELAY": "200"},
}


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


@dataclasses.dataclass
class LogRecord:
    scope: str
    severity: str = ""
    body: str = ""
    trace_id: str = ""
    #: each value as Rotel prints it inside its type: ``Int(42)`` -> ``42``, ``Slice(Str(a))`` -> ``Str(a)``
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


_BODY = re.compile(r"^Body: \w+\((.*)\)$")


def parse_logs(text: str) -> list[LogRecord]:
    """Log records from Rotel's detailed debug output, in arrival order."""
    records: list[LogRecord] = []
    scope = ""
    in_attributes = False
    in_record = False  # a batch of spans or metrics may follow the last record: its "Trace ID" lines are not its
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.rstrip()
        if line.startswith("InstrumentationScope "):
            scope = line.split()[1] if len(line.split()) > 1 else ""
        elif line.startswith("LogRecord #"):
            records.append(LogRecord(scope))
            in_attributes, in_record = False, True
        elif line.startswith("Resource"):
            in_record = False
        elif not in_record:
            continue
        elif line.startswith("SeverityText:"):
            records[-1].severity = line.split(":", 1)[1].strip()
        elif match := _BODY.match(line):
            records[-1].body = match.group(1)
        elif line == "Attributes:":
            in_attributes = True
        elif in_attributes and (match := _ATTRIBUTE.match(line)):
            records[-1].attributes[match.group(1).strip()] = match.group(2)
        elif line.strip().startswith("Trace ID"):
            records[-1].trace_id = line.split(":", 1)[1].strip()
            in_attributes = False
    return records


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


#: what makes Rotel print every point, span and log record it receives (the tests read them back from its log)
_PRINT_EVERYTHING = [
    *("--debug-log", "metrics", "--debug-log", "traces", "--debug-log", "logs"),
    *("--debug-log-verbosity", "detailed"),
]


class Rotel(LoggedProcess):
    """A Rotel collector on loopback ports, ready when started, dropping what it receives (``--exporter
    blackhole``) after printing it to its log; ``quiet=True`` prints nothing per batch (for the benchmarks, where
    printing would cost more than receiving)."""

    grace = 10.0

    def __init__(
        self, workdir: Path, grpc_port: int | None = None, http_port: int | None = None, *, quiet: bool = False
    ) -> None:
        self.grpc_port = grpc_port or net.free_port()
        self.http_port = http_port or net.free_port()
        super().__init__(
            "rotel",
            [
                str(BINARY),
                "start",
                "--otlp-grpc-endpoint",
                f"{net.LOOPBACK}:{self.grpc_port}",
                "--otlp-http-endpoint",
                f"{net.LOOPBACK}:{self.http_port}",
                "--exporter",
                "blackhole",
                *([] if quiet else _PRINT_EVERYTHING),
            ],
            # a collector revived on the same ports gets a log of its own
            workdir / f"rotel-{self.http_port}-{time.monotonic_ns()}.log",
        )
        self.ready_or_stop(
            lambda: wait_until(self._running_log, 15, what="rotel", until=lambda log: "Starting Rotel" in log)
        )

    def _running_log(self) -> LogText:
        self.assert_running()
        return self.log()

    def endpoint(self, protocol: str) -> str:
        port = self.grpc_port if protocol == "grpc" else self.http_port
        return f"http://{net.LOOPBACK}:{port}"

    def export_env(self, *signals: str, protocol: str = "http/protobuf") -> dict[str, str]:
        """The settings that make a server export ``signals`` (``metrics``, ``traces``, ``logs``) here over
        ``protocol``, batching quickly (spans and log records within 200 ms, metrics every second)."""
        env = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint(protocol)}
        for signal in signals:
            env[f"OTEL_{signal.upper()}_EXPORTER"] = "otlp"
            env.update(_QUICK[signal])
        return env

    def points(self, metric: str) -> list[Point]:
        return [p for p in parse(self.log())[0] if p.metric == metric]

    def last_value(self, metric: str) -> float | None:
        """The value of the newest data point of ``metric``; None before the first."""
        points = self.points(metric)
        return points[-1].value if points else None

    def spans(self) -> list[Span]:
        return parse(self.log())[1]

    def log_records(self) -> list[LogRecord]:
        return parse_logs(self.log())
