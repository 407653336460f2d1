"""Grafana's JSON model, the pieces the dashboard is built of: panels, a query variable, the layout on the grid.

Used by :mod:`.dashboard` (the operator-kit command, run from a developer's shell: ``make docs``); never inside
gunicorn. Knows nothing of otel_gunicorn's metrics: every query it is given reads from the ``$datasource`` variable,
and the output is what Grafana 10.2 and later import (schema 39).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: every panel, query and variable reads from the data source picked in the dashboard's $datasource variable
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana's grid is 24 columns wide
GRID_WIDTH = 24

#: a panel's queries: (PromQL expression, legend) each
Targets = Sequence[tuple[str, str]]


def legend(*labels: str) -> str:
    """A legend naming each series by ``labels`` (Grafana's ``{{label}}`` syntax)."""
    return " ".join("{{" + name + "}}" for name in labels)


def _targets(targets: Targets, exemplars: bool = False) -> list[dict[str, Any]]:
    found = [
        {"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": text, "range": True}
        for i, (expr, text) in enumerate(targets)
    ]
    if exemplars:  # Grafana's "Exemplars" toggle of a Prometheus query (docs/exemplars.md)
        for target in found:
            target["exemplar"] = True
    return found


#: series whose legend ends in "limit" are drawn as a dashed red ceiling, not as data
LIMIT_STYLE = {
    "matcher": {"id": "byRegexp", "options": ".*limit$"},
    "properties": [
        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
        {"id": "custom.fillOpacity", "value": 0},
        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
    ],
}


def timeseries(
    title: str,
    description: str,
    targets: Targets,
    unit: str = "short",
    *,
    width: int = 12,
    bars: bool = False,
    threshold: float | None = None,
    exemplars: bool = False,
) -> dict[str, Any]:
    """A time series panel; ``threshold`` draws a red line at that value; ``exemplars`` asks Prometheus for the
    exemplars of the queried series too (shown as points linking to their traces)."""
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "fillOpacity": 80 if bars else 10}
    custom |= {"lineWidth": 1, "showPoints": "never", "spanNulls": False}
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
        custom["thresholdsStyle"] = {"mode": "line"}
    defaults = {"unit": unit, "min": 0, "custom": custom, "thresholds": {"mode": "absolute", "steps": steps}}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width},
        "fieldConfig": {"defaults": defaults, "overrides": [LIMIT_STYLE]},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": _targets(targets, exemplars),
    }


def stat(title: str, description: str, expr: str, unit: str, red_above: float | None = None) -> dict[str, Any]:
    """A single-number panel for the overview row; red from ``red_above`` on."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4, "w": 4},
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        },
        "targets": _targets([(expr, "")]),
    }


def layout(rows: Sequence[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Number the panels and place them left to right under their row headers, wrapping at the grid's width."""
    placed: list[dict[str, Any]] = []
    y = 0
    for title, panels in rows:
        placed.append(
            {"type": "row", "title": title, "collapsed": False, "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}}
        )
        x, y, height = 0, y + 1, 0
        for panel in panels:
            width = panel["gridPos"]["w"]
            if x + width > GRID_WIDTH:
                x, y, height = 0, y + height, 0
            placed.append({**panel, "gridPos": {**panel["gridPos"], "x": x, "y": y}})
            x, height = x + width, max(height, panel["gridPos"]["h"])
        y += height
    return [
        {"id": number, **panel, "panels": []} if panel["type"] == "row" else {"id": number, **panel}
        for number, panel in enumerate(placed, start=1)
    ]


def query_variable(name: str, text: str, query: str, description: str, *, many: bool = True) -> dict[str, Any]:
    """A variable whose values ``query`` lists; ``many``: several of them, or All, can be picked at once."""
    return {
        "name": name,
        "label": text,
        "description": description,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": many,
        "includeAll": many,
        "current": {},
        "options": [],
        "hide": 0,
        "regex": "",
    }


BUILTIN_ANNOTATIONS = {
    "builtIn": 1,
    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
    "enable": True,
    "hide": True,
    "iconColor": "rgba(0, 211, 255, 1)",
    "name": "Annotations & Alerts",
    "type": "dashboard",
}
