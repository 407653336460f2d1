"""The hooks module as gunicorn sees it."""

from __future__ import annotations

import gunicorn.config
import pytest
from gunicorn.util import get_arity

from otel_gunicorn import hooks

SETTINGS = {s.name: s for s in gunicorn.config.KNOWN_SETTINGS}


@pytest.mark.parametrize("name", hooks.__all__)
def test_every_hook_has_gunicorns_exact_arity(name):
    """gunicorn checks hook arity exactly; each of ours matches the setting's default function."""
    setting = SETTINGS[name]
    assert get_arity(setting.default) == get_arity(getattr(hooks, name))


def test_conf_module_exports_every_hook():
    """python:otel_gunicorn.conf carries every hook."""
    from otel_gunicorn import conf

    assert all(getattr(conf, name) is getattr(hooks, name) for name in hooks.__all__)


def test_hooks_all_is_sorted():
    """__all__ stays sorted, as the style asks."""
    assert sorted(hooks.__all__) == hooks.__all__
