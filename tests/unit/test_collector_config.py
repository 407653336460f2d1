"""The example OpenTelemetry Collector configuration (collector-config.yaml) must hang together.

These tests check the file's internal consistency only; they do not run a collector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG_PATH = Path(__file__).resolve().parents[2] / "collector-config.yaml"
SECTIONS = ("receivers", "processors", "exporters")
SIGNALS = ("metrics", "traces", "logs")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The parsed collector-config.yaml."""
    with CONFIG_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """The service's pipelines, by pipeline id."""
    return config["service"]["pipelines"]


def component_type(component_id: str) -> str:
    """The type part of a component or pipeline id: `otlp` for `otlp/backend`."""
    return component_id.split("/", 1)[0]


def host_of(endpoint: str) -> str:
    """The host part of a `host:port` endpoint (an IPv6 host keeps its brackets)."""
    return endpoint.rsplit(":", 1)[0]


def endpoints_under(node: Any, path: str) -> dict[str, str]:
    """Every `endpoint` value in a nested configuration node, by its dotted path."""
    found: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}"
            if key == "endpoint" and isinstance(value, str):
                found[child] = value
            else:
                found.update(endpoints_under(value, child))
    return found


def test_pipelines_exist_for_metrics_traces_and_logs(pipelines):
    """The service has at least one pipeline for each of metrics, traces and logs."""
    assert set(SIGNALS) == {component_type(pipeline_id) for pipeline_id in pipelines} & set(SIGNALS)


@pytest.mark.parametrize("section", SECTIONS)
def test_every_referenced_component_is_defined(config, pipelines, section):
    """Each component a pipeline names is defined in the top-level section of its kind."""
    referenced = {name for pipeline in pipelines.values() for name in pipeline.get(section, [])}
    assert set() == referenced - set(config.get(section) or {})


@pytest.mark.parametrize("section", SECTIONS)
def test_every_defined_component_is_used(config, pipelines, section):
    """Each component defined in a top-level section appears in at least one pipeline."""
    used = {name for pipeline in pipelines.values() for name in pipeline.get(section, [])}
    assert set() == set(config.get(section) or {}) - used


def test_otlp_receiver_accepts_grpc_and_http(config):
    """The otlp receiver enables both the grpc and the http protocol."""
    assert {"grpc", "http"} == set(config["receivers"]["otlp"]["protocols"])


def test_otlp_receiver_protocols_name_their_endpoints(config):
    """Each otlp receiver protocol sets its endpoint explicitly rather than relying on the collector's default."""
    protocols = config["receivers"]["otlp"]["protocols"]
    assert {"grpc": True, "http": True} == {name: bool((protocols[name] or {}).get("endpoint")) for name in protocols}


def test_receivers_bind_only_loopback_by_default(config):
    """No receiver endpoint listens beyond the loopback interface (0.0.0.0, :port or a public address)."""
    endpoints = endpoints_under(config["receivers"], "receivers")
    assert {} == {path: endpoint for path, endpoint in endpoints.items() if host_of(endpoint) not in LOOPBACK_HOSTS}


def test_memory_limiter_is_the_first_processor_of_every_pipeline(pipelines):
    """Every pipeline runs memory_limiter before any other processor."""
    firsts = {
        pipeline_id: component_type((pipeline.get("processors") or [""])[0])
        for pipeline_id, pipeline in pipelines.items()
    }
    assert dict.fromkeys(pipelines, "memory_limiter") == firsts


def test_batch_follows_memory_limiter_in_every_pipeline(pipelines):
    """Every pipeline has a batch processor placed after its memory_limiter."""
    placed = {}
    for pipeline_id, pipeline in pipelines.items():
        types = [component_type(name) for name in pipeline.get("processors") or []]
        placed[pipeline_id] = (
            "batch" in types and "memory_limiter" in types and types.index("batch") > types.index("memory_limiter")
        )
    assert dict.fromkeys(pipelines, True) == placed
