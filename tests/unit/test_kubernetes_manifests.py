"""The Kubernetes manifests in docs/kubernetes and the snippets of docs/autoscaling.md: valid objects, consistent with
each other, and querying only metrics otel_gunicorn serves.

Kubernetes kinds are validated offline by kubernetes-validate, which bundles the Kubernetes JSON schemas, in strict
mode (unknown fields refused), against 1.30 (the oldest release the manifests claim: the preStop sleep action) and the
newest release it knows. It has no schema for custom resources: the KEDA ScaledObject and the prometheus-operator
PodMonitor are checked against the small JSON schemas below, written from those projects' CRDs for the fields these
manifests use (anything else refused), not against the CRDs themselves; prometheus-adapter's configuration likewise.
PromQL is parsed by promtool (Debian package ``prometheus``, which ``make test`` installs), and the weighted query is
evaluated by it once. Nothing here runs a cluster.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from otel_gunicorn import _instruments

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "docs" / "kubernetes").glob("*.yaml"))
GUIDE = ROOT / "docs" / "autoscaling.md"
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

#: the utilisation gauges the guide scales on: OpenTelemetry name -> (kind, unit, Prometheus name)
UTILIZATION = {
    "gunicorn.server.utilization": ("gauge", "1", "gunicorn_server_utilization"),
    "gunicorn.server.capacity": ("gauge", "{request}", "gunicorn_server_capacity"),
}
#: the collector's Prometheus exporters add ``_ratio`` to a gauge of unit 1; the arbiter's endpoint does not
COLLECTOR_NAMES = {"gunicorn_server_utilization_ratio"}

QUERY_KEYS = ("query", "seriesQuery", "metricsQuery", "expr")
#: PromQL words that are not metric names (aggregations and functions are recognised by the parenthesis after them)
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless"}
#: what prometheus-adapter puts in its templates, for parsing and evaluating the rules' queries
ADAPTER_TEMPLATE = {"<<.LabelMatchers>>": 'namespace="shop",app="shop"', "<<.GroupBy>>": "pod"}


# ---------------------------------------------------------------- the files


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ``language`` code blocks of a Markdown text, list-item indentation removed."""
    pattern = re.compile(rf"^( *)```{language}\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(match.group(2)) for match in pattern.finditer(text)]


def guide_yaml() -> list[Any]:
    return [yaml.safe_load(block) for block in fenced(GUIDE.read_text(), "yaml")]


def objects() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object: the manifests' documents and the guide's YAML blocks that are whole objects."""
    found = [(f"{path.name}:{doc.get('kind')}", doc) for path in MANIFESTS for doc in documents(path)]
    found += [(f"autoscaling.md:{block['kind']}", block) for block in guide_yaml() if "apiVersion" in block]
    return found


def manifest(kind: str) -> dict[str, Any]:
    [doc] = [doc for path in MANIFESTS for doc in documents(path) if doc["kind"] == kind]
    return doc


def adapter_config() -> dict[str, Any]:
    return yaml.safe_load(manifest("ConfigMap")["data"]["config.yaml"])


def container() -> dict[str, Any]:
    [gunicorn] = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return gunicorn


def option(command: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    return value


# ---------------------------------------------------------------- schemas of the custom resources

#: a Prometheus duration, as the PodMonitor CRD checks it
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}
SCALING_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
#: keda.sh/v1alpha1 ScaledObject (KEDA 2.x CRD), the fields used here; trigger metadata values are strings
SCALED_OBJECT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {"scaleUp": SCALING_RULES, "scaleDown": SCALING_RULES},
                                }
                            },
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                                # the prometheus scaler's required parameters, and the optional ones used here
                                "required": ["serverAddress", "query", "threshold"],
                                "propertyNames": {
                                    "enum": [
                                        "serverAddress",
                                        "query",
                                        "threshold",
                                        "activationThreshold",
                                        "ignoreNullValues",
                                    ]
                                },
                                "properties": {"threshold": QUANTITY, "ignoreNullValues": {"enum": ["true", "false"]}},
                            },
                        },
                    },
                },
            },
        },
    },
}
#: monitoring.coreos.com/v1 PodMonitor (prometheus-operator CRD), the fields used here
POD_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}
CUSTOM_RESOURCES = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
}
#: prometheus-adapter's configuration file (its docs/config.md), the fields used here
ADAPTER_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["seriesQuery", "resources", "name", "metricsQuery"],
    "properties": {
        "seriesQuery": {"type": "string"},
        "resources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "namespaced": {"type": "boolean"},
                "overrides": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["resource"],
                        "properties": {"group": {"type": "string"}, "resource": {"type": "string"}},
                    },
                },
            },
        },
        "name": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"matches": {"type": "string"}, "as": {"type": "string"}},
        },
        "metricsQuery": {"type": "string"},
    },
}
ADAPTER_CONFIG = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rules": {"type": "array", "items": ADAPTER_RULE},
        "externalRules": {"type": "array", "items": ADAPTER_RULE},
    },
}


# ---------------------------------------------------------------- PromQL


def queries(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(where, PromQL)`` for every query-holding key under ``node``, prometheus-adapter templates filled in; an
    embedded YAML document (a ConfigMap's ``config.yaml``) is searched too."""
    if isinstance(node, dict):
        series = node.get("seriesQuery")
        for key, value in node.items():
            if key in QUERY_KEYS and isinstance(value, str):
                yield f"{where}:{key}", fill_template(value, series)
            elif key.endswith(".yaml") and isinstance(value, str):
                yield from queries(yaml.safe_load(value), f"{where}:{key}")
            else:
                yield from queries(value, where)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item, where)


def fill_template(query: str, series_query: str | None) -> str:
    if "<<.Series>>" in query:
        series = re.match(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)", series_query or "")
        assert series is not None, f"no metric name in the seriesQuery {series_query!r}"
        query = query.replace("<<.Series>>", series[1])
    for placeholder, value in ADAPTER_TEMPLATE.items():
        query = query.replace(placeholder, value)
    return query


def all_queries() -> list[tuple[str, str]]:
    found = [(f"autoscaling.md:promql#{i}", block) for i, block in enumerate(fenced(GUIDE.read_text(), "promql"))]
    for path in MANIFESTS:
        for doc in documents(path):
            found += queries(doc, path.name)
    for i, block in enumerate(guide_yaml()):
        found += queries(block, f"autoscaling.md:yaml#{i}")
    return found


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL expression selects (``name{...}``, ``name[...]``, ``{__name__="name"}``)."""
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', query))
    query = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # strings: label values, regexes
    query = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", query)  # label matchers, ranges
    query = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", query)
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", query):
        followed_by = query[match.end() :].lstrip()[:1]
        if followed_by != "(" and match.group() not in PROMQL_WORDS:  # "(": an aggregation or a function
            names.add(match.group())
    return names


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: make test installs the Debian package 'prometheus'")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- tests: the objects


def test_every_manifest_holds_named_kubernetes_objects():
    """Each file in docs/kubernetes parses as YAML into objects with an apiVersion, a kind and a name."""
    assert MANIFESTS
    for path in MANIFESTS:
        docs = documents(path)
        assert docs, path.name
        assert all({"apiVersion", "kind"} <= set(doc) and doc["metadata"]["name"] for doc in docs), path.name


def test_every_yaml_block_of_the_guide_parses():
    """The YAML code blocks of docs/autoscaling.md are YAML (several are whole objects, validated below)."""
    blocks = guide_yaml()
    assert len(blocks) >= 5
    assert all(isinstance(block, dict) for block in blocks)


def object_params(custom: bool) -> list[Any]:
    return [
        pytest.param(obj, id=where)
        for where, obj in objects()
        if ((obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES) == custom
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("obj", object_params(custom=False))
def test_kubernetes_objects_pass_the_kubernetes_schema(obj, version):
    """Deployment, Service, HorizontalPodAutoscaler, ConfigMap, NetworkPolicy: valid, no unknown field."""
    assert kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("obj", object_params(custom=True))
def test_custom_resources_pass_their_field_schema(obj):
    """The ScaledObject and the PodMonitor match the fields of their CRDs that they use, and nothing else."""
    jsonschema.validate(obj, CUSTOM_RESOURCES[obj["apiVersion"], obj["kind"]])


def test_both_custom_resources_are_there():
    """KEDA's ScaledObject and prometheus-operator's PodMonitor exist (the parametrized test above has cases)."""
    assert set(CUSTOM_RESOURCES) == {(o["apiVersion"], o["kind"]) for _, o in objects()} & set(CUSTOM_RESOURCES)


def test_a_misspelt_field_of_a_custom_resource_is_refused():
    """The small CRD schemas refuse what the real CRDs would silently drop: a misspelt field."""
    scaled_object = copy.deepcopy(manifest("ScaledObject"))
    scaled_object["spec"]["maxReplicas"] = scaled_object["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(scaled_object, SCALED_OBJECT)


def test_the_adapter_configuration_has_rules_in_the_adapters_format():
    """The ConfigMap's config.yaml holds prometheus-adapter rules and external rules, with the fields it reads."""
    config = adapter_config()
    jsonschema.validate(config, ADAPTER_CONFIG)
    assert config["rules"] and config["externalRules"]


# ---------------------------------------------------------------- tests: the objects fit together


def test_gunicorn_runs_with_otel_gunicorns_configuration():
    """The container starts gunicorn with ``-c python:otel_gunicorn.conf``."""
    command = container()["command"]
    assert ["gunicorn", "-c", "python:otel_gunicorn.conf"] == command[:3]


def test_the_endpoint_answers_on_the_pod_address_at_the_named_metrics_port():
    """HOST is 0.0.0.0, and PORT, the container port named ``metrics`` and the scrape annotation agree."""
    env = {e["name"]: e["value"] for e in container()["env"]}
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ("0.0.0.0", 9464, 9464, 9464) == (
        env["OTEL_EXPORTER_PROMETHEUS_HOST"],
        int(env["OTEL_EXPORTER_PROMETHEUS_PORT"]),
        ports["metrics"],
        int(annotations["prometheus.io/port"]),
    )
    assert ("true", "/metrics") == (annotations["prometheus.io/scrape"], annotations["prometheus.io/path"])


def test_the_service_does_not_expose_the_metrics_port():
    """The Service forwards to the application port only."""
    targets = {port["targetPort"] for port in manifest("Service")["spec"]["ports"]}
    assert {"http"} == targets


def test_the_readiness_probe_checks_the_port_gunicorn_serves_the_application_on():
    """The probe asks the ``http`` port, which is the port in gunicorn's --bind."""
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    bind_port = int(option(container()["command"], "--bind").rsplit(":", 1)[1])
    assert ("http", bind_port) == (container()["readinessProbe"]["httpGet"]["port"], ports["http"])


def test_the_grace_period_outlasts_the_pre_stop_pause_and_the_graceful_timeout():
    """terminationGracePeriodSeconds > preStop sleep + --graceful-timeout: gunicorn finishes before SIGKILL."""
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    pause = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(option(container()["command"], "--graceful-timeout"))
    assert pod["terminationGracePeriodSeconds"] > pause + graceful


def test_the_pod_monitor_scrapes_the_metrics_port_of_the_deployments_pods():
    """Its selector picks the pods, its endpoint is the ``metrics`` port, and it copies the ``app`` label queried."""
    pod_labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = manifest("PodMonitor")["spec"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert [("metrics", "/metrics")] == [(e["port"], e["path"]) for e in spec["podMetricsEndpoints"]]
    assert "app" in spec["podTargetLabels"]


def test_the_autoscalers_scale_the_deployment():
    """KEDA and the HPA name the Deployment, in its namespace."""
    deployment = manifest("Deployment")["metadata"]
    keda, hpa = manifest("ScaledObject"), manifest("HorizontalPodAutoscaler")
    assert (deployment["name"], deployment["namespace"]) == (
        keda["spec"]["scaleTargetRef"]["name"],
        keda["metadata"]["namespace"],
    )
    assert ("Deployment", deployment["name"], deployment["namespace"]) == (
        hpa["spec"]["scaleTargetRef"]["kind"],
        hpa["spec"]["scaleTargetRef"]["name"],
        hpa["metadata"]["namespace"],
    )


def test_the_hpa_asks_for_the_metric_the_adapter_serves_for_the_deployments_pods():
    """The HPA's external metric is the name of the adapter's external rule, and its selector matches the pods."""
    [metric] = manifest("HorizontalPodAutoscaler")["spec"]["metrics"]
    served = [rule["name"]["as"] for rule in adapter_config()["externalRules"]]
    pod_labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert [metric["external"]["metric"]["name"]] == served
    assert metric["external"]["metric"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_annotation_scrape_job_reads_the_deployments_annotations():
    """The guide's scrape job keeps pods annotated like the Deployment and scrapes the annotated port."""
    [config] = [block for block in guide_yaml() if "scrape_configs" in block]
    relabel = config["scrape_configs"][0]["relabel_configs"]
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    [keep] = [r for r in relabel if r.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert re.fullmatch(keep["regex"], annotations["prometheus.io/scrape"])
    [address] = [r for r in relabel if r.get("target_label") == "__address__"]
    # Prometheus anchors the regex and joins the source labels with ";"
    joined = f"10.1.2.3:8000;{annotations['prometheus.io/port']}"
    assert "10.1.2.3:9464" == re.fullmatch(address["regex"], joined).expand(address["replacement"].replace("$", "\\"))


# ---------------------------------------------------------------- tests: the queries


def test_there_are_queries_in_the_guide_and_the_manifests():
    """The guide's PromQL blocks, the KEDA trigger and the adapter rules are all found (so the checks below run)."""
    places = {where.split(":")[0] for where, _ in all_queries()}
    assert {"autoscaling.md", "keda-scaledobject.yaml", "prometheus-adapter-rules.yaml"} <= places
    assert len(all_queries()) >= 10


def test_queries_name_only_metrics_otel_gunicorn_serves():
    """Every metric a query selects is in the instrument table (by its Prometheus name) or is a collector's name."""
    known = {_instruments.prometheus_name(i) for i in _instruments.ALL}
    known |= {
        _instruments.prometheus_name(i) + suffix
        for i in _instruments.ALL
        if i.kind.value == "histogram"
        for suffix in ("_bucket", "_count", "_sum")
    }
    known |= COLLECTOR_NAMES
    unknown = {(where, name) for where, query in all_queries() for name in metric_names(query) - known}
    assert set() == unknown


def test_the_utilization_gauges_are_in_the_instrument_table():
    """gunicorn.server.utilization and .capacity exist as documented here: gauges, their units, their names."""
    table = {i.name: i for i in _instruments.ALL}
    for name, (kind, unit, prometheus) in UTILIZATION.items():
        instrument = table[name]
        assert (kind, unit, prometheus) == (
            instrument.kind.value,
            instrument.unit,
            _instruments.prometheus_name(instrument),
        )


def test_the_collector_name_is_the_utilization_gauge_with_ratio():
    """On the OTLP path the queries use the collector's name for the unit-1 gauge: the endpoint's name + ``_ratio``."""
    names = {name for _, query in all_queries() for name in metric_names(query)}
    ratio_gauges = {prometheus + "_ratio" for _, unit, prometheus in UTILIZATION.values() if unit == "1"}
    assert COLLECTOR_NAMES == ratio_gauges
    assert COLLECTOR_NAMES <= names


def test_promtool_parses_every_query(tmp_path):
    """Each query, as a recording rule, passes ``promtool check rules``."""
    rules = [{"record": f"check:query_{i}", "expr": query} for i, (_, query) in enumerate(all_queries())]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = promtool("check", "rules", "queries.yml", cwd=tmp_path)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_the_keda_query_weights_each_pod_by_its_capacity(tmp_path):
    """A pod of 4 at utilisation 1.0 and a pod of 16 at 0.25: the KEDA query reads 8 / 20 = 0.4, not the mean 0.625."""
    [trigger] = manifest("ScaledObject")["spec"]["triggers"]
    pods = {"small": (1.0, 4), "large": (0.25, 16)}
    series = [
        {"series": f'{name}{{namespace="shop", app="shop", pod="{pod}"}}', "values": f"{value}x5"}
        for pod, (utilization, capacity) in pods.items()
        for name, value in (("gunicorn_server_utilization", utilization), ("gunicorn_server_capacity", capacity))
    ]
    rule = {"record": "shop:utilization:weighted", "expr": trigger["metadata"]["query"]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "keda", "rules": [rule]}]}))
    case = {
        "interval": "15s",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": "shop:utilization:weighted",
                "eval_time": "1m",
                "exp_samples": [{"labels": "shop:utilization:weighted", "value": 0.4}],
            }
        ],
    }
    (tmp_path / "rules_test.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": [case]}))
    result = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert 0 == result.returncode, result.stdout + result.stderr
