"""The process's one at-fork registration: stages in the written order, and no child left holding a lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from otel_gunicorn import _fork

STORM = Path(__file__).with_name("fork_storm.py")


def test_the_runtime_lock_is_taken_before_the_log_writing_lock():
    """Arbiter threads log while holding the runtime lock, so a fork must take the runtime lock first."""
    assert _fork.STAGES.index("arbiter runtime") < _fork.STAGES.index("log writing")


def test_the_distro_provider_goes_back_before_any_lock_is_taken():
    """The put-back of opentelemetry-instrument's MeterProvider takes no lock of ours: it runs first."""
    assert "distro meter provider" == _fork.STAGES[0]


class Interpreter:
    """Stands in for ``os.register_at_fork``: keeps what it was given, so a test can play a fork."""

    def __init__(self) -> None:
        self.registered: list[dict[str, Callable[[], None]]] = []

    def register(self, **handlers: Callable[[], None]) -> None:
        self.registered.append(handlers)

    def fork(self) -> None:
        (handlers,) = self.registered
        for name in ("before", "after_in_parent", "after_in_child"):
            handlers[name]()


def test_handlers_run_in_stage_order_before_and_in_reverse_after():
    """Before a fork the stages run in ``STAGES`` order; after it, in reverse, in parent and child alike."""
    calls: list[str] = []
    interpreter = Interpreter()
    handlers = _fork.ForkHandlers(register=interpreter.register)
    for stage in reversed(_fork.STAGES):
        handlers.join(
            stage,
            before=lambda s=stage: calls.append(f"before {s}"),
            after_in_parent=lambda s=stage: calls.append(f"parent {s}"),
            after_in_child=lambda s=stage: calls.append(f"child {s}"),
        )
    interpreter.fork()
    expected = (
        [f"before {s}" for s in _fork.STAGES]
        + [f"parent {s}" for s in reversed(_fork.STAGES)]
        + [f"child {s}" for s in reversed(_fork.STAGES)]
    )
    assert expected == calls


def test_an_unknown_stage_is_refused():
    """Joining under a stage that is not in the written order is a programming error."""
    with pytest.raises(ValueError, match="not one of"):
        _fork.ForkHandlers(register=Interpreter().register).join("somewhere")


def test_a_failing_handler_does_not_stop_the_others():
    """One stage's handler raising leaves the later stages' handlers to run."""
    ran: list[str] = []
    interpreter = Interpreter()
    handlers = _fork.ForkHandlers(register=interpreter.register)
    handlers.join("arbiter runtime", before=lambda: 1 / 0)
    handlers.join("log writing", before=lambda: ran.append("log writing"))
    interpreter.fork()
    assert ["log writing"] == ran


def test_the_interpreter_is_asked_once_however_many_join():
    """Handlers registered with the interpreter cannot be removed: one registration serves every stage."""
    interpreter = Interpreter()
    handlers = _fork.ForkHandlers(register=interpreter.register)
    for stage in (*_fork.STAGES, _fork.STAGES[0]):
        handlers.join(stage)
    assert 1 == len(interpreter.registered)


def test_a_reset_lock_is_free_whoever_held_it():
    """``reset_in_child`` leaves a lock any thread can take, even if another thread held the old one."""
    lock = _fork.ForkLock(fork_wait=0.01)
    lock.hold_for_fork()
    lock.reset_in_child()
    assert lock.hold_for_fork()


@pytest.mark.parametrize("lock", ["runtime", "log", "app"])
def test_fifty_forks_with_the_lock_held_by_another_thread(lock, tmp_path):
    """50 forks in a row, each while another thread holds the lock: every child logs, measures and exits, and no
    fork had to give up waiting for the arbiter's lock (what taking the locks in the wrong order would cause)."""
    log = tmp_path / "error.log"
    result = subprocess.run(
        [sys.executable, str(STORM), lock, "50", str(log)], capture_output=True, text=True, timeout=60
    )
    assert (0, "") == (result.returncode, result.stdout), result.stderr[-2000:]
    lines = log.read_text().splitlines()
    assert 50 == sum("is alive" in line for line in lines)
    assert [] == [line for line in lines if "forking anyway" in line]
