"""otel_gunicorn's hooks chained behind the user's own, so a forgotten call cannot switch telemetry off in silence.

gunicorn keeps one function per hook. A ``gunicorn.conf.py`` that starts with ``from otel_gunicorn.hooks import *``
and then defines its own ``when_ready`` or ``post_worker_init`` (readiness files, database pools: very common)
replaces ours, and unless it calls ours the endpoint never starts, or the workers never report — without a word.

So the arbiter wraps, in gunicorn's configuration object, every hook whose function is not ours: the wrapper runs
the user's function and, when that did not call ours, runs ours right after it and warns once, naming the hook to
chain. A user function that does call ours is left to do so (ours runs once); a hook the configuration does not set
at all (gunicorn's no-op default, e.g. after importing only some of our hooks) simply gets ours. Whether ours ran
inside the user's function is tracked per call in a context variable, which threads, greenlets (greenlet switches
contexts natively) and asyncio tasks each have their own of.

Runs in the arbiter (installing) and in every process forked from it (the wrappers are inherited with the
configuration). A HUP builds a fresh configuration, so the arbiter installs again on its next hook.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any

#: marks a gunicorn configuration object whose hooks are already chained
_CHAINED = "_otel_gunicorn_chained"

# The names of the wrapped hooks still waiting for ours in the current call (a fresh set per wrapper call).
_waiting: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("otel_gunicorn_waiting", default=None)


class HookChain:
    """Chains ``ours`` (hook name → our function) behind whatever a configuration holds for each hook.

    Args:
        ours: our hook functions by gunicorn setting name. Each must call :meth:`ours_called` first.
        forgotten: called once per hook name and process when a user's hook did not call ours (after ours ran).
    """

    def __init__(self, ours: Mapping[str, Callable[..., Any]], forgotten: Callable[[str], None]) -> None:
        self._ours = dict(ours)
        self._forgotten = forgotten
        self._reported: set[str] = set()
        #: whether any wrapper was installed (in this process or the one it was forked from): our hooks skip all
        #: bookkeeping while it is False, so the common configuration pays nothing on the request path
        self.active = False

    def ours_called(self, name: str) -> None:
        """Called first by each of our hooks: a wrapper around the user's function then knows ours ran."""
        if self.active:
            waiting = _waiting.get()
            if waiting is not None:
                waiting.discard(name)

    def install(self, cfg: Any) -> list[str]:
        """Chain our hooks into gunicorn's configuration ``cfg``; idempotent per configuration object.

        Returns the names of the hooks now wrapped around a user's function (for the log).
        """
        if getattr(cfg, _CHAINED, False):
            return []
        settings = getattr(cfg, "settings", None)
        if not isinstance(settings, dict):
            return []
        wrapped = []
        for name, ours in self._ours.items():
            setting = settings.get(name)
            if setting is None:  # an older gunicorn without this hook (the dirty hooks before 25)
                continue
            current = setting.value
            if current is ours or getattr(current, "__wrapped_hook__", None) is not None:
                continue
            # Assigned directly: gunicorn's validator would check the wrapper's arity, which is *args.
            if current is None or current is setting.default:
                setting.value = ours
            else:
                setting.value = self._wrap(name, current, ours)
                wrapped.append(name)
        object.__setattr__(cfg, _CHAINED, True)
        if wrapped:
            self.active = True
        return wrapped

    def _wrap(self, name: str, users: Callable[..., Any], ours: Callable[..., Any]) -> Callable[..., Any]:
        def chained(*args: Any) -> Any:
            waiting = {name}
            token = _waiting.set(waiting)
            try:
                return users(*args)
            finally:
                _waiting.reset(token)
                if waiting:  # the user's function did not call ours: run it now, even if theirs raised
                    ours(*args)
                    self.report_forgotten(name)

        chained.__wrapped_hook__ = users  # type: ignore[attr-defined]
        chained.__name__ = getattr(users, "__name__", name)
        chained.__doc__ = getattr(users, "__doc__", None)
        return chained

    def report_forgotten(self, name: str) -> None:
        """Tell (once per hook and process) that the user's ``name`` hook did not call ours."""
        if name not in self._reported:
            self._reported.add(name)
            self._forgotten(name)
