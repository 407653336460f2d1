"""The arbiter's end of the worker→arbiter channel: a unix stream socket in a private directory, one thread.

Runs in the arbiter only. Hazards and how they are handled:

* identity: a connection is accepted only when ``SO_PEERCRED`` says its uid is ours and ``/proc`` says its parent is
  this arbiter; the socket also lives in a mode-0700 directory. Refusals are counted and logged (rate-limited);
* garbage: a malformed or oversized frame closes that one connection and is counted; the worker reconnects;
* fork: every state change happens under the runtime's lock, which the fork handler holds across ``fork()``; the
  thread itself only ever blocks in ``select``/``recv`` outside it. A child closes every socket here
  (:meth:`close_in_child`);
* a dead worker whose connection stays open (its fd leaked into a grandchild) is retired after a grace period.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from otel_gunicorn._arbiter import peer
from otel_gunicorn._arbiter.merge import MergeStore
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import snapshot_from_payload
from otel_gunicorn._wire import FrameDecoder, FrameKind, ProtocolError

_log = logging.getLogger("otel_gunicorn")
_RECV_BYTES = 256 * 1024
#: seconds a dead worker's connection may stay open before its data is retired anyway
DEAD_CONNECTION_GRACE = 2.0


@dataclasses.dataclass
class ChannelStats:
    """What the channel has seen; exported as otel_gunicorn's own metrics."""

    connections_accepted: int = 0
    connections_refused: int = 0
    reports_received: int = 0
    frames_rejected: int = 0


@dataclasses.dataclass
class _Connection:
    sock: socket.socket
    pid: int
    decoder: FrameDecoder


class ChannelServer:
    """Accepts worker connections and feeds their reports into ``store``.

    Args:
        directory: where to create the private socket directory.
        store: the merge store, only touched while holding ``lock``.
        lock: the runtime lock (held across every fork).
        slot_of: maps a worker pid to its slot (None while unknown).
        max_frame_bytes: size limit of one report.
    """

    def __init__(
        self,
        directory: str,
        store: MergeStore,
        lock: threading.RLock,
        slot_of: Callable[[int], int | None],
        max_frame_bytes: int,
    ) -> None:
        self._dir = tempfile.mkdtemp(prefix="otel-gunicorn-", dir=directory)  # mode 0700
        self.path = os.path.join(self._dir, "channel.sock")
        self._store = store
        self._lock = lock
        self._slot_of = slot_of
        self._max_frame_bytes = max_frame_bytes
        self.stats = ChannelStats()
        self._errors = RateLimitedLogger(_log)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(128)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._connections: dict[socket.socket, _Connection] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="otel-gunicorn-channel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, close every socket and remove the socket directory."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._close_sockets()
        shutil.rmtree(self._dir, ignore_errors=True)

    def close_in_child(self) -> None:
        """In a freshly forked worker: drop the inherited arbiter sockets (the thread does not exist here)."""
        self._close_sockets()

    def _close_sockets(self) -> None:
        for conn in list(self._connections.values()):
            conn.sock.close()
        self._connections.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        try:
            self._selector.close()
        except (OSError, ValueError):
            pass

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self._selector.select(timeout=1.0)
            except (OSError, ValueError):  # closed under us: stopping
                return
            for key, _mask in events:
                sock: Any = key.fileobj
                if sock is self._listener:
                    self._accept()
                elif sock is self._wake_r:
                    return
                else:
                    self._read(self._connections[sock])
            self._retire_leaked()

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._errors.log(logging.WARNING, "accept", "otel_gunicorn: channel accept failed: %s", exc)
                return
            pid = self._authenticate(sock)
            if pid is None:
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, pid, FrameDecoder(self._max_frame_bytes))
            self._connections[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, None)
            with self._lock:
                self.stats.connections_accepted += 1
                self._store.connected(pid, self._slot_of(pid))

    def _authenticate(self, sock: socket.socket) -> int | None:
        try:
            creds = peer.peer_credentials(sock)
        except OSError as exc:
            return self._refuse(f"peer credentials unavailable: {exc}")
        if creds.uid != os.getuid():
            return self._refuse(f"pid {creds.pid} runs as uid {creds.uid}, not {os.getuid()}")
        stat = peer.read_proc_stat(creds.pid)
        if stat is None or stat.ppid != os.getpid():
            return self._refuse(f"pid {creds.pid} is not a worker of this arbiter")
        return creds.pid

    def _refuse(self, why: str) -> int | None:
        with self._lock:
            self.stats.connections_refused += 1
        self._errors.log(logging.WARNING, "refused", "otel_gunicorn: refused a channel connection: %s", why)
        return None

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        try:
            frames = conn.decoder.feed(data)
            snapshots = [snapshot_from_payload(f.payload) for f in frames if f.kind is FrameKind.SNAPSHOT]
        except ProtocolError as exc:
            with self._lock:
                self.stats.frames_rejected += 1
            self._errors.log(
                logging.WARNING, "frame", "otel_gunicorn: dropped a bad report from pid %d: %s", conn.pid, exc
            )
            self._drop(conn)
            return
        if snapshots:
            slot = self._slot_of(conn.pid)
            with self._lock:
                self.stats.reports_received += len(snapshots)
                self._store.report(conn.pid, slot, snapshots[-1])  # cumulative: the newest supersedes the rest

    def _drop(self, conn: _Connection) -> None:
        """Close a connection; if its worker is gone, its data can now be retired."""
        self._selector.unregister(conn.sock)
        del self._connections[conn.sock]
        conn.sock.close()
        running = peer.is_running(conn.pid)
        with self._lock:
            if not running:
                self._store.exited(conn.pid)
            self._store.disconnected(conn.pid)

    def _retire_leaked(self) -> None:
        with self._lock:
            leaked = set(self._store.dead_but_connected(DEAD_CONNECTION_GRACE))
        for conn in [c for c in self._connections.values() if c.pid in leaked]:
            self._drop(conn)
