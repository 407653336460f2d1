"""A malformed ``OTEL_RESOURCE_ATTRIBUTES`` is reported once per server: by the arbiter's configuration check, while
the SDK's own line (at every ``Resource.create``) is held back."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.resources import Resource

from otel_gunicorn._config import resource_attribute_problems
from otel_gunicorn._otel_compat import ENV_RESOURCE_WARNING, env_resource_warnings_held_back


def test_a_pair_without_equals_sign_is_named_with_the_variable() -> None:
    """The message names the variable, its value, the pair left out and the accepted form."""
    expected = [
        "OTEL_RESOURCE_ATTRIBUTES='garbage,a=1' is not valid: 'garbage' is not key=value; expected key=value pairs "
        "separated by commas (values URL-encoded); ignoring it"
    ]
    assert expected == resource_attribute_problems({"OTEL_RESOURCE_ATTRIBUTES": "garbage,a=1"})


def test_valid_or_unset_attributes_are_not_reported() -> None:
    """Pairs with an ``=`` (an empty value included) and an unset variable are fine."""
    assert [[], []] == [
        resource_attribute_problems({"OTEL_RESOURCE_ATTRIBUTES": "a=1,b="}),
        resource_attribute_problems({}),
    ]


def test_the_sdk_reports_each_malformed_pair_with_this_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Pins the SDK's line that is held back: its resource detector logs it at ``Resource.create``."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "garbage")
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.resources"):
        Resource.create({})
    assert [ENV_RESOURCE_WARNING] == [r.msg for r in caplog.records]


def test_the_sdk_line_is_held_back_inside_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Inside the context the resource is built without the line (and with the valid pairs); after it, the filter is
    gone."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "garbage,a=1")
    with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.resources"):
        with env_resource_warnings_held_back():
            resource = Resource.create({})
        inside = len(caplog.records)
        Resource.create({})
    assert (0, "1", 1) == (inside, resource.attributes.get("a"), len(caplog.records))
