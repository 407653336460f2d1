"""The Prometheus rules in docs/prometheus/ pass promtool, their unit tests, and the runbook covers every alert.

promtool comes from the Debian package ``prometheus`` that ``make test`` installs; these tests fail, not skip,
without it, as the end-to-end tests do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
RULE_FILES = sorted(p for p in RULES_DIR.glob("*.yml") if not p.name.endswith("_test.yml"))
TEST_FILES = sorted(RULES_DIR.glob("*_test.yml"))
RUNBOOK = RULES_DIR.parent / "alerts.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: make test installs the Debian package 'prometheus'")
    # from the rules' directory: the test files name their rule files relative to it
    return subprocess.run([binary, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


def alert_rules() -> list[dict]:
    groups = [g for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_there_are_rules_and_tests():
    """docs/prometheus holds at least one rule file and one test file (the globs below would pass on nothing)."""
    assert RULE_FILES and TEST_FILES


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_accepts_the_rule_file(path):
    """`promtool check rules` finds nothing wrong."""
    result = promtool("check", "rules", path.name)
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_the_rule_unit_tests_pass(path):
    """`promtool test rules` passes: each alert fires and stays silent exactly where the tests expect."""
    result = promtool("test", "rules", path.name)
    assert 0 == result.returncode, result.stdout + result.stderr


def alert_cases() -> tuple[set[str], set[str]]:
    """(alerts some test expects to fire, alerts some test expects to stay silent), over every test file."""
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    return fires, silent


def test_every_alert_has_a_firing_and_a_silent_case():
    """Each alert of the rule files is expected to fire in one test case and to stay silent in another."""
    names = {rule["alert"] for rule in alert_rules()}
    fires, silent = alert_cases()
    assert (names, names) == (fires, silent)


def test_every_alert_has_a_summary_a_description_and_a_runbook():
    """Each alert carries the three annotations an on-call engineer reads first."""
    missing = [
        (rule["alert"], key)
        for rule in alert_rules()
        for key in ("summary", "description", "runbook_url")
        if not rule.get("annotations", {}).get(key)
    ]
    assert [] == missing


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_url_points_at_a_section_of_the_runbook():
    """Each runbook_url is docs/alerts.md#<anchor of one of its headings>."""
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), re.MULTILINE)}
    urls = [rule["annotations"]["runbook_url"] for rule in alert_rules()]
    assert all(url.split("#")[0].endswith("/docs/alerts.md") for url in urls)
    assert [] == [url for url in urls if url.split("#")[1] not in anchors]
