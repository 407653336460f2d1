"""The arbiter's end of the worker→arbiter channel: a unix stream socket in a private directory, one thread.

Runs in the arbiter only. This module is transport: it authenticates connections, decodes frames and hands what
arrives to a :class:`ChannelSink` (the runtime, which feeds the worker lifecycle and the merge store). Hazards:

* identity: a connection is accepted only when ``SO_PEERCRED`` says its uid is ours and ``/proc`` says its parent is
  this arbiter, or, for a dirty worker, the dirty arbiter this arbiter forked (:func:`peer.lineage`); the socket also
  lives in a mode-0700 directory. Refusals are counted and logged (rate-limited);
* timing: gunicorn forks its dirty arbiter before ``when_ready``, so the directory may be reserved earlier
  (:func:`reserve_directory`, in ``on_starting``) and handed to the server; until the server binds, a dirty process's
  connect fails and it retries with its next report;
* garbage: a malformed or oversized frame closes that one connection and is counted; the worker reconnects;
* fork: the sink does its work under the runtime lock, which the fork handler holds across ``fork()``; this thread
  only ever blocks in ``select``/``recv``. A child closes every socket here (:meth:`ChannelServer.close_in_child`).
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
from typing import Any, Protocol

from otel_gunicorn._arbiter import peer
from otel_gunicorn._ratelimit import RateLimitedLogger
from otel_gunicorn._snapshot import Snapshot, keep_exemplars, snapshot_from_payload
from otel_gunicorn._wire import Frame, FrameDecoder, FrameKind, ProtocolError

_log = logging.getLogger("otel_gunicorn")
_RECV_BYTES = 256 * 1024


class ChannelSink(Protocol):
    """What the channel reports to (the arbiter runtime): one call per connection accepted or closed, per frame."""

    def connected(self, pid: int, dirty: bool = False) -> None:
        """``dirty``: the peer is a dirty worker (forked by the dirty arbiter), not a child of this arbiter."""
        ...

    def dirty_arbiter_pid(self) -> int | None:
        """The dirty arbiter gunicorn forked (None: none), whose children may connect as dirty workers."""
        ...

    def reaped_awaiting(self, pid: int) -> bool:
        """``pid`` is a worker of this arbiter that died and was reaped, and whose last connection may still be in the
        listen backlog (its peer credentials name a process /proc no longer has)."""
        ...

    def report(self, pid: int, snapshot: Snapshot) -> None: ...
    def goodbye(self, pid: int, reason: str) -> None: ...
    def disconnected(self, pid: int, running: bool) -> None: ...
    def leaked(self) -> set[int]:
        """Called at least once a second: pids whose connections to close (dead workers' fds kept open elsewhere)."""
        ...

    def tick(self) -> float:
        """Called with :meth:`leaked`: the sink's periodic work; returns the seconds until it is next due (the
        channel waits at most that long, and at most a second, before calling again)."""
        ...


@dataclasses.dataclass
class ChannelStats:
    """What the channel has seen; exported as otel_gunicorn's own metrics."""

    connections_accepted: int = 0
    connections_refused: int = 0
    reports_received: int = 0
    frames_rejected: int = 0


def reserve_directory(directory: str) -> str:
    """Create the channel's private directory (mode 0700) under ``directory``; :class:`ChannelServer` removes it."""
    return tempfile.mkdtemp(prefix="otel-gunicorn-", dir=directory)


def socket_path(private_dir: str) -> str:
    """Where the channel's socket is (or will be) in its private directory."""
    return os.path.join(private_dir, "channel.sock")


@dataclasses.dataclass
class _Connection:
    sock: socket.socket
    pid: int
    decoder: FrameDecoder


class ChannelServer:
    """Accepts worker connections and passes their frames to ``sink``.

    Args:
        directory: where to create the private socket directory.
        sink: receives connections, reports, goodbyes and disconnections.
        max_frame_bytes: size limit of one frame.
        private_dir: a directory :func:`reserve_directory` made already (None: make one now).
    """

    def __init__(self, directory: str, sink: ChannelSink, max_frame_bytes: int, private_dir: str | None = None) -> None:
        self._dir = private_dir or reserve_directory(directory)
        self.path = socket_path(self._dir)
        self._sink = sink
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
        self._buffer = bytearray(_RECV_BYTES)
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
        timeout = 1.0
        while not self._stopping:
            try:
                events = self._selector.select(timeout=timeout)
            except (OSError, ValueError):  # closed under us: stopping
                return
            for key, _mask in events:
                sock: Any = key.fileobj
                if sock is self._wake_r:
                    return
                try:
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._connections:
                        self._read(self._connections[sock])
                except Exception as exc:  # noqa: BLE001 - this thread must outlive any one bad connection
                    self._errors.log(logging.ERROR, "bug", "otel_gunicorn: channel error, connection dropped: %r", exc)
                    if sock in self._connections:
                        self._close(self._connections[sock])
            self._close_leaked()
            timeout = min(1.0, max(0.0, self._sink.tick()))

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._errors.log(logging.WARNING, "accept", "otel_gunicorn: channel accept failed: %s", exc)
                return
            peer_id = self._authenticate(sock)
            if peer_id is None:
                self.stats.connections_refused += 1
                sock.close()
                continue
            pid, kind = peer_id
            sock.setblocking(False)
            self._connections[sock] = _Connection(sock, pid, FrameDecoder(self._max_frame_bytes))
            self._selector.register(sock, selectors.EVENT_READ, None)
            self.stats.connections_accepted += 1
            self._sink.connected(pid, dirty=kind is peer.PeerKind.DIRTY_WORKER)

    def _authenticate(self, sock: socket.socket) -> tuple[int, peer.PeerKind] | None:
        """The peer's pid and kind when it is one of this arbiter's workers; otherwise log why and return None."""
        try:
            creds = peer.peer_credentials(sock)
        except OSError as exc:
            why = f"peer credentials unavailable: {exc}"
        else:
            if creds.uid != os.getuid():
                why = f"pid {creds.pid} runs as uid {creds.uid}, not {os.getuid()}"
            else:
                kind = peer.identify(creds.pid, os.getpid(), self._sink.dirty_arbiter_pid())
                if kind is not None:
                    return creds.pid, kind
                # A worker that connected just before it exited (max_requests recycling, a busy channel thread): its
                # connection waited in the backlog while the arbiter reaped it, and its last report is in the socket.
                if self._sink.reaped_awaiting(creds.pid):
                    return creds.pid, peer.PeerKind.CHILD
                why = f"pid {creds.pid} is not a worker of this arbiter"
        self._errors.log(logging.WARNING, "refused", "otel_gunicorn: refused a channel connection: %s", why)
        return None

    def _read(self, conn: _Connection) -> None:
        # One reused buffer: recv(n) would allocate n bytes and shrink them on every call, which fragments the
        # arbiter's heap over days of reports (observed as slow RSS growth in bench/).
        try:
            size = conn.sock.recv_into(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            size = 0
        data = self._buffer[:size]
        if not data:
            self._close(conn)
            return
        try:
            frames = conn.decoder.feed(data)
            latest = None
            for frame in frames:
                if frame.kind is FrameKind.SNAPSHOT:
                    # cumulative: the newest supersedes the rest (but for the exemplars sampled in between)
                    snapshot = snapshot_from_payload(frame.payload)
                    latest = snapshot if latest is None else keep_exemplars(latest, snapshot)
                    self.stats.reports_received += 1
                else:
                    self._sink.goodbye(conn.pid, _goodbye_reason(frame))
        except ProtocolError as exc:
            self.stats.frames_rejected += 1
            self._errors.log(
                logging.WARNING, "frame", "otel_gunicorn: dropped a bad report from pid %d: %s", conn.pid, exc
            )
            self._close(conn)
            return
        if latest is not None:
            self._sink.report(conn.pid, latest)

    def _close(self, conn: _Connection) -> None:
        self._selector.unregister(conn.sock)
        del self._connections[conn.sock]
        conn.sock.close()
        self._sink.disconnected(conn.pid, peer.is_running(conn.pid))

    def _close_leaked(self) -> None:
        """A dead worker's fd can live on in a process it forked; stop waiting for that connection to close."""
        leaked = self._sink.leaked()
        for conn in [c for c in self._connections.values() if c.pid in leaked]:
            self._close(conn)


def _goodbye_reason(frame: Frame) -> str:
    payload = frame.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("exit"), str):
        raise ProtocolError("goodbye payload must be an object with an 'exit' string")
    return str(payload["exit"])
