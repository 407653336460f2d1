"""Fork again and again while another thread holds one of otel_gunicorn's locks; every child must get on with its life.

Run by tests/unit/test_fork.py in a process of its own (the at-fork registration is for the process's life), as
``python fork_storm.py LOCK ROUNDS LOGFILE``, LOCK one of ``runtime``, ``log``, ``app``. Builds the real pieces: an
arbiter runtime started through ``_arbiter.runtime.start`` (Prometheus endpoint on a free loopback port, channel in a
temporary directory), the ``otel_gunicorn`` logger forwarded to ``gunicorn.error``, and an application counter of
the worker's MeterProvider. Each round, a thread holds the chosen lock as the real code does, then the main thread
forks; the child logs through the forwarder, adds to the counter, reads it back and exits. Exit status: 0 when every
child exited 0 in time, 1 with one line per failure otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import types

from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
from opentelemetry.sdk.resources import Resource

from otel_gunicorn import _handoff
from otel_gunicorn._arbiter import runtime as arbiter
from otel_gunicorn._gunicorn_log import forward_to_gunicorn
from otel_gunicorn._worker.app_meter import AppMeterProvider

#: how long a holder keeps its lock once the main thread may fork
HOLD = 0.03
#: longest a child may take to log, measure and exit
CHILD_DEADLINE = 10.0

library_log = logging.getLogger("otel_gunicorn")


class SlowHandler(logging.FileHandler):
    """gunicorn's error log, slow to write: a thread inside ``emit`` holds the forwarder's writing lock a while."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.inside = threading.Event()
        #: a fork gave up waiting for the arbiter's lock (the arbiter says so in the log)
        self.fork_gave_up = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "forking anyway" in record.getMessage():
            self.fork_gave_up.set()
        if threading.current_thread().name == "holder":
            self.inside.set()
            time.sleep(HOLD)
        super().emit(record)


class StuckKey:
    """An attribute value whose hash, once armed, never returns: a thread measuring with it is stuck inside the
    instrument's lock (the lookup of its series happens under the lock), as a request thread may be at any fork."""

    def __init__(self) -> None:
        self.armed = False
        self.inside = threading.Event()

    def __hash__(self) -> int:
        if self.armed:
            self.inside.set()
            threading.Event().wait()
        return 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_arbiter(channel_dir: str) -> arbiter.ArbiterRuntime:
    environ = {
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(free_port()),
        "OTEL_GUNICORN_CHANNEL_DIR": channel_dir,
    }
    arbiter.check_config(environ)
    server = types.SimpleNamespace(WORKERS={}, LISTENERS=[], num_workers=1, worker_class=None, pid=os.getpid())
    arbiter.start(server)
    runtime = arbiter.current()
    assert runtime is not None, "the arbiter runtime did not start"
    return runtime


#: the key the "app" holder is stuck on (disarmed in a child, where reading the counter back hashes it again)
STUCK = StuckKey()


def child(counter: object, provider: AppMeterProvider) -> int:
    """In the child: what a freshly forked worker does first. 0 when all of it worked."""
    STUCK.armed = False
    if arbiter.current() is not None or _handoff.inherited() is None:
        return 2  # the arbiter's fork handler did not hand over
    library_log.warning("child %d is alive", os.getpid())
    counter.add(1, {"k": "v"})  # type: ignore[attr-defined]
    values = [points for meta, points in provider.app_instruments.snapshot().items() if meta.name == "c"]
    return 0 if values and values[0].get((("k", "v"),)) == 1 else 3


def hold(lock: str, runtime: arbiter.ArbiterRuntime, handler: SlowHandler, counter: object, stop: threading.Event):
    """The holder thread's work for ``lock``, looping until ``stop``."""
    if lock == "app":
        counter.add(1, {"k": STUCK})  # type: ignore[attr-defined]  # its series exists before the hash hangs
        STUCK.armed = True
        stuck = threading.Thread(target=counter.add, args=(1, {"k": STUCK}), name="stuck", daemon=True)  # type: ignore[attr-defined]
        stuck.start()
        STUCK.inside.wait()
        return
    while not stop.is_set():
        if lock == "runtime":  # an arbiter thread: the runtime lock held, and a line logged under it
            with runtime.lock:
                handler.inside.set()
                time.sleep(HOLD)
                library_log.warning("holder: still merging")
        else:
            library_log.warning("holder: a slow line")


def wait_child(pid: int) -> int | None:
    deadline = time.monotonic() + CHILD_DEADLINE
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def main(lock: str, rounds: int, log_path: str) -> int:
    handler = SlowHandler(log_path)
    error_log = logging.getLogger("gunicorn.error")
    error_log.addHandler(handler)
    error_log.setLevel(logging.INFO)
    error_log.propagate = False
    forward_to_gunicorn()
    runtime = start_arbiter(tempfile.mkdtemp(prefix="fork-storm-"))
    provider = AppMeterProvider([], Resource.create({}), AlwaysOffExemplarFilter())
    counter = provider.get_meter("storm").create_counter("c")
    stop = threading.Event()
    holder = threading.Thread(target=hold, args=(lock, runtime, handler, counter, stop), name="holder", daemon=True)
    holder.start()
    failures = []
    for number in range(rounds):
        handler.inside.clear()
        if lock != "app" and not handler.inside.wait(5):
            failures.append(f"round {number}: the holder never took its lock")
            break
        pid = os.fork()
        if pid == 0:
            try:
                exit_code = child(counter, provider)
            except BaseException:  # noqa: BLE001 - the parent reads the exit status
                exit_code = 4
            os._exit(exit_code)
        code = wait_child(pid)
        if code != 0:
            failures.append(f"round {number}: child {pid} " + ("hung" if code is None else f"exited {code}"))
        if handler.fork_gave_up.is_set():
            failures.append(f"round {number}: the fork gave up waiting for the arbiter's lock")
        if failures:
            break
    stop.set()
    arbiter.stop()
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
