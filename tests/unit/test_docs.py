"""The reference pages in docs/ are generated from the code and must not drift from it; what the pages tell a new
user to install exists."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from otel_gunicorn import _docs, _top

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("page", sorted(_docs.PAGES))
def test_generated_page_matches_the_code(page):
    """Each generated page in docs/ equals what `python -m otel_gunicorn._docs` would write now."""
    assert _docs.PAGES[page]() == (DOCS / page).read_text()


def test_every_environment_variable_is_documented():
    """Every constant in _environment has its documentation string."""
    from otel_gunicorn import _environment

    names = {name for name in vars(_environment) if name.isupper()}
    assert names == {name for name, _doc in _docs.environment_variables()}


def test_no_prometheus_name_ends_in_a_reserved_suffix():
    """Only histograms may produce _count, _sum or _bucket series: promtool rejects such gauges and counters."""
    from otel_gunicorn._instruments import ALL, prometheus_name
    from otel_gunicorn._snapshot import Kind

    offenders = [
        i.name
        for i in ALL
        if i.kind is not Kind.HISTOGRAM
        and prometheus_name(i).removesuffix("_total").endswith(("_count", "_sum", "_bucket"))
    ]
    assert [] == offenders


def test_the_generator_writes_where_it_is_told_never_beside_the_module(tmp_path):
    """`python -m otel_gunicorn._docs DIR` writes every page into DIR (so an install never writes site-packages)."""
    assert 0 == _docs.main([str(tmp_path)])
    assert sorted(_docs.PAGES) == sorted(p.name for p in tmp_path.iterdir())


def test_the_generator_refuses_a_missing_directory(tmp_path):
    """A directory that does not exist is an error, not a reason to create files elsewhere."""
    assert 2 == _docs.main([str(tmp_path / "nope")])


#: a pip command that installs otel_gunicorn by name, as from PyPI, where it is not published
_BY_NAME = re.compile(r"pip install ['\"]?otel[-_]gunicorn(\[\w+\])?(['\"`\s]|$)")


def test_no_page_installs_otel_gunicorn_by_name():
    """``pip install 'otel-gunicorn[top]'`` fails (the package is not on PyPI): the pages and top's own message name
    the checkout or the wheel instead."""
    texts = {path.name: path.read_text() for path in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]}
    texts["otel_gunicorn/_top"] = _top.NEEDS_RICH
    offenders = [
        f"{name}: {line.strip()}"
        for name, text in texts.items()
        for line in text.splitlines()
        if _BY_NAME.search(line) and "finds nothing" not in line
    ]
    assert [] == offenders


def test_the_quickstart_names_only_what_pip_installs():
    """The quickstart's list of what gets installed names no optional dependency (it named rich, the top extra)."""
    text = (DOCS / "quickstart.md").read_text()
    listed = text[text.index("pip installs the dependencies too") :].split("\n\n")[0].split(".")[0]
    required = {
        re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in metadata.requires("otel-gunicorn") or [] if "extra ==" not in r
    }
    assert "rich" not in required and "rich" not in listed
