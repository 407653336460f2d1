"""The reference pages in docs/ are generated from the code and must not drift from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_gunicorn import _docs

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
