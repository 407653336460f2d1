"""The documentation site (mkdocs.yml over docs/) builds with `mkdocs build --strict`, and its nav holds every page.

The build runs in a subprocess into a temporary directory, so `make test` and a plain pytest run hold the same line.
It is skipped when mkdocs or mkdocs-material is missing (they come with the `docs` extra).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIG = ROOT / "mkdocs.yml"


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml without importing what its `!!python/...` tags name (the toc slugify function)."""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages(entries: Any) -> list[str]:
    """Every page path in a mkdocs nav, in order: entries are paths, `{title: path}` or `{title: [entries]}`."""
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in nav_pages(value)]
    raise TypeError(f"unexpected nav entry {entries!r}")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    with CONFIG.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=_ConfigLoader)


def test_every_page_is_in_the_nav(config):
    """No orphan page: each Markdown file under docs/ is reachable from the site's navigation."""
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert sorted(pages - set(nav_pages(config["nav"]))) == []


def test_every_nav_entry_is_a_page_once(config):
    """The nav names only pages that exist, each once."""
    listed = nav_pages(config["nav"])
    assert [page for page in listed if not (DOCS / page).is_file()] == []
    assert sorted({page for page in listed if listed.count(page) > 1}) == []


@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("mkdocs", "material")),
    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')",
)
def test_site_builds_strict_without_warnings(tmp_path):
    """`mkdocs build --strict` succeeds: no broken link or anchor, no page outside the nav, no other warning."""
    site = tmp_path / "site"
    # NO_MKDOCS_2_WARNING: mkdocs-material prints a banner about its successor on import; it is not a build warning
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(CONFIG), "--site-dir"]
    result = subprocess.run(
        [*command, str(site)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if "WARNING" in line] == []
    assert (site / "index.html").is_file()
