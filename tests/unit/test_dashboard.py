"""The Grafana dashboard and the Prometheus rules are generated from the metric catalogue and must not drift from it."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml

from otel_gunicorn import _instruments, _operator_kit
from otel_gunicorn._operator_kit import dashboard, grafana, promql, rules
from otel_gunicorn._operator_kit.__main__ import main
from otel_gunicorn._snapshot import Kind

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana" / "otel-gunicorn.json"
RULES = ROOT / "docs" / "prometheus" / "otel-gunicorn.rules.yml"
REGENERATE = (
    f"regenerate: python -m otel_gunicorn._operator_kit {DASHBOARD.relative_to(ROOT)} {RULES.relative_to(ROOT)}"
)


def panels() -> list[dict]:
    return [p for p in dashboard.dashboard()["panels"] if p["type"] != "row"]


def panel_queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_the_committed_dashboard_is_what_the_generator_writes():
    """docs/grafana/otel-gunicorn.json equals what `python -m otel_gunicorn._operator_kit` would write now."""
    assert dashboard.render_dashboard() == DASHBOARD.read_text(), REGENERATE


def test_the_committed_rules_are_what_the_generator_writes():
    """docs/prometheus/otel-gunicorn.rules.yml equals what `python -m otel_gunicorn._operator_kit` would write now."""
    assert rules.render_rules() == RULES.read_text(), REGENERATE


@pytest.fixture
def renamed_listener_queue(monkeypatch):
    """The catalogue with gunicorn.listener.queued_connections renamed, the generators re-read from it."""
    renamed = dataclasses.replace(_instruments.LISTENER_QUEUED, name="gunicorn.listener.waiting")
    monkeypatch.setattr(_instruments, "LISTENER_QUEUED", renamed)
    reload_generators()
    yield
    monkeypatch.undo()
    reload_generators()


def reload_generators() -> None:
    """Re-run the operator kit's modules, each after those it imports names from (promql computes them)."""
    for module in (promql, grafana, rules, dashboard):
        importlib.reload(module)


@pytest.mark.usefixtures("renamed_listener_queue")
def test_a_renamed_instrument_renames_every_query_that_uses_it():
    """Renaming an instrument in the catalogue changes the dashboard and the rules; the old name is gone."""
    generated = dashboard.render_dashboard() + rules.render_rules()
    assert "gunicorn_listener_waiting" in generated
    assert "gunicorn_listener_queued_connections" not in generated


def test_an_attribute_the_instrument_lacks_is_refused():
    """A label taken from an attribute the instrument does not have is a generator bug, reported at once."""
    with pytest.raises(ValueError, match="gunicorn.worker.limit has no attribute 'gunicorn.worker.state'"):
        promql.label(_instruments.WORKER_LIMIT, "gunicorn.worker.state")


def test_the_dashboard_is_for_grafana_10_with_a_datasource_variable():
    """Schema 38 or later, and the data source is a variable of type prometheus (no hard-coded uid)."""
    board = dashboard.dashboard()
    [datasource] = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
    assert board["schemaVersion"] >= 38
    assert ("datasource", "prometheus") == (datasource["type"], datasource["query"])


def test_every_panel_and_query_uses_the_datasource_variable():
    """Each panel and each of its queries reads from ${datasource}."""
    expected = {"type": "prometheus", "uid": "${datasource}"}
    assert all(p["datasource"] == expected for p in panels())
    assert all(t["datasource"] == expected for p in panels() for t in p["targets"])


def test_job_and_instance_come_from_otel_gunicorn_series():
    """$job and $instance list the targets that export otel_gunicorn's worker limit; $instance follows $job."""
    found = {v["name"]: v["query"] for v in dashboard.variables()}
    assert "label_values(gunicorn_worker_limit, job)" == found["job"]
    assert 'label_values(gunicorn_worker_limit{job=~"$job"}, instance)' == found["instance"]


def test_every_selector_of_every_panel_is_limited_to_the_picked_servers():
    """No panel query reads a series outside the $job and $instance the user picked."""
    selectors = [s for q in panel_queries() for s in re.findall(r"[\w:]*\{[^}]*\}", q)]
    assert selectors
    assert [] == [s for s in selectors if 'job=~"$job"' not in s or 'instance=~"$instance"' not in s]


def test_panel_queries_use_only_defined_variables():
    """Every $variable in a query is a template variable of the dashboard or one Grafana defines."""
    defined = {v["name"] for v in dashboard.variables()} | {"__rate_interval", "__range"}
    used = {name for q in panel_queries() for name in re.findall(r"\$(\w+)", q)}
    assert used <= defined


def test_panel_ids_are_unique():
    """Grafana keys panels by id."""
    ids = [p["id"] for p in dashboard.dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping():
    """Every panel lies within the 24 columns, and no two panels share a cell."""
    boxes = [p["gridPos"] for p in dashboard.dashboard()["panels"]]
    assert all(0 <= b["x"] and b["x"] + b["w"] <= 24 for b in boxes)

    def overlap(a: dict, b: dict) -> bool:
        return (
            a["x"] < b["x"] + b["w"]
            and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"]
            and b["y"] < a["y"] + a["h"]
        )

    assert [] == [(a, b) for a, b in itertools.combinations(boxes, 2) if overlap(a, b)]


def test_a_utilization_instrument_gets_its_panel(monkeypatch):
    """A `*.utilization` gauge added to the catalogue (the saturation issue) appears in the saturation row."""
    gauge = _instruments.Instrument(
        "gunicorn.server.utilization", "1", Kind.GAUGE, "Share of capacity in use.", (), "arbiter", "all", "0..1"
    )
    monkeypatch.setattr(_instruments, "ALL", (*_instruments.ALL, gauge))
    [panel] = dashboard._utilisation()
    expected = 'max by (instance) (gunicorn_server_utilization{job=~"$job", instance=~"$instance"})'
    assert expected == panel["targets"][0]["expr"]


def test_the_dashboard_is_plain_json():
    """The rendered dashboard parses back to the generator's dict."""
    assert dashboard.dashboard() == json.loads(dashboard.render_dashboard())


def test_the_rules_are_plain_yaml_with_two_groups():
    """The rendered rules parse back to the generator's dict: recording rules, then alerts."""
    parsed = yaml.safe_load(rules.render_rules())
    assert rules.rules() == parsed
    assert ["otel_gunicorn.recording", "otel_gunicorn.alerts"] == [g["name"] for g in parsed["groups"]]


def test_the_docs_base_is_the_project_documentation_url():
    """Runbook and guide links point into the repository pyproject.toml names as Documentation."""
    declared = re.search(r'^Documentation = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None
    assert declared[1] == _operator_kit.DOCS.replace("/blob/", "/tree/")


def test_every_dashboard_row_is_described_in_the_guide():
    """docs/dashboard.md has a section for each row of the dashboard."""
    guide = (ROOT / "docs" / "dashboard.md").read_text()
    rows = [p["title"] for p in dashboard.dashboard()["panels"] if p["type"] == "row"]
    assert [] == [row for row in rows if f"### {row}\n" not in guide]


def test_the_generator_writes_each_path_it_is_given_and_nothing_else(tmp_path):
    """`python -m otel_gunicorn._operator_kit X.json Y.yml` writes the dashboard to X and the rules to Y, only."""
    board, rule_file = tmp_path / "board.json", tmp_path / "rules.yml"
    assert 0 == main([str(board), str(rule_file)])
    assert ["board.json", "rules.yml"] == sorted(p.name for p in tmp_path.iterdir())
    assert (dashboard.render_dashboard(), rules.render_rules()) == (board.read_text(), rule_file.read_text())


@pytest.mark.parametrize(
    "argv",
    [[], ["board.txt"], ["missing/board.json"], ["board.json", "missing/rules.yml"]],
    ids=["no-path", "unknown-suffix", "missing-directory", "one-bad-of-two"],
)
def test_the_generator_refuses_bad_paths_and_writes_nothing(tmp_path, argv):
    """No path, an unknown suffix or a missing directory: exit status 2 and no file written, not even the good ones."""
    assert 2 == main([str(tmp_path / arg) for arg in argv])
    assert [] == list(tmp_path.iterdir())
