"""A child process that logs to a file and is stopped for sure; a fleet of them; stopping a process we did not start.

Runs in the test or bench process. Every server the harness starts (gunicorn, Prometheus, Rotel) is a
:class:`LoggedProcess`: stdout and stderr go to one file in the caller's working directory, which explains a failed
start (its log is added to the error) and a failed test (the fixtures print it). Hazards: a process that ignores
SIGTERM is killed after a grace period, so nothing outlives its test; a master re-executed by USR2 is not our child
and is stopped by pid with :func:`stop_pid`.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from harness import proc
from harness.waiting import LogText, wait_until

#: how much of a log a failed start shows
LOG_TAIL = 20_000


def stop_process(process: subprocess.Popen, grace: float = 15.0) -> None:  # type: ignore[type-arg]
    """TERM, wait up to ``grace`` seconds, then KILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def stop_pid(pid: int, grace: float = 15.0) -> None:
    """TERM a process that is not our child, wait up to ``grace`` seconds, then KILL it and its children."""
    if not proc.alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: proc.alive(pid), grace, what=f"pid {pid} to exit", until=lambda alive: not alive)
    except AssertionError:
        workers = proc.children(pid)  # before the kill: afterwards they belong to init
        os.kill(pid, signal.SIGKILL)
        for worker in workers:
            os.kill(worker, signal.SIGKILL)


class LoggedProcess:
    """One child process, its stdout and stderr in ``log_path``."""

    #: seconds between SIGTERM and SIGKILL in :meth:`stop`
    grace = 15.0

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._log = open(log_path, "wb")
        try:
            self.process = subprocess.Popen(
                self.command,
                cwd=cwd,
                env=None if env is None else dict(env),
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def assert_running(self) -> None:
        """Raise AssertionError if the process has exited (use in readiness probes)."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}")

    def ready_or_stop(self, ready: Callable[[], object]) -> None:
        """Run the readiness waits in ``ready``; if they fail, stop the process and add its log to the error."""
        try:
            ready()
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n--- {self.log_path} ---\n{self.log()[-LOG_TAIL:]}") from None
        except BaseException:
            self.stop()
            raise

    def log(self) -> LogText:
        """Everything the process wrote so far (also after :meth:`stop`); a wait that gives up on it shows its tail."""
        if not self._log.closed:
            self._log.flush()
        return LogText(self.log_path.read_text(errors="replace"))

    def stop(self) -> int | None:
        """TERM, then KILL after :attr:`grace` seconds; return the exit status. Safe to call twice."""
        stop_process(self.process, self.grace)
        self._log.close()
        return self.process.returncode


P = TypeVar("P", bound=LoggedProcess)


class Fleet(Generic[P]):
    """Starts processes with ``factory`` (call the fleet as you would the factory) and stops all it started on exit."""

    def __init__(self, factory: Callable[..., P]) -> None:
        self._factory = factory
        self.started: list[P] = []

    def __call__(self, *args: Any, **kwargs: Any) -> P:
        started = self._factory(*args, **kwargs)
        self.started.append(started)
        return started

    def __enter__(self) -> Fleet[P]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for started in self.started:
            started.stop()

    def logs(self) -> str:
        """Every started process's log under a header naming its file."""
        return "".join(f"--- {p.name} log ({p.log_path}) ---\n{p.log()}\n" for p in self.started)
