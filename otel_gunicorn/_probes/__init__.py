"""How many connections wait in a listening socket's accept queue, and how many it may hold.

One module per socket family behind :func:`probe`: :mod:`.tcp` (``TCP_INFO``, IPv4 and IPv6) and :mod:`.unix`
(``NETLINK_SOCK_DIAG``). Each splits the syscall from a pure parser so captured kernel replies can be tested.

Runs in the arbiter, which owns the listeners and reads each once (forked workers share the kernel socket); under
``reuse_port`` the arbiter has no listeners and each worker probes its own socket instead.

Hazards: the answer is a snapshot, and Linux only. A failing probe means the series is **absent**, never a fake 0:
:func:`probe` returns ``None`` when there is nothing to report (not Linux, not a listener, unknown family) and raises
:class:`OSError` when the syscall fails, so the caller can log once and leave the series out.
"""

from __future__ import annotations

import socket
import sys
from typing import NamedTuple

__all__ = ["ListenerQueue", "probe"]


class ListenerQueue(NamedTuple):
    """A listener's accept queue: ``queued`` connections wait for ``accept()``; the kernel admits up to ``limit``.

    ``limit`` is the effective backlog (``min(listen() argument, net.core.somaxconn)``); the queue can hold
    ``limit + 1`` because the kernel only refuses once it is already over the limit.
    """

    queued: int
    limit: int


def probe(sock: socket.socket) -> ListenerQueue | None:
    """Return ``sock``'s accept queue, or ``None`` if there is none to read here; raise :class:`OSError` on failure."""
    # The family modules import ListenerQueue from this package, so they are imported here rather than at the top.
    if sys.platform != "linux":
        return None
    family = sock.family
    if family in (socket.AF_INET, socket.AF_INET6):
        from otel_gunicorn._probes.tcp import probe_tcp

        return probe_tcp(sock)
    if family == socket.AF_UNIX:
        from otel_gunicorn._probes.unix import probe_unix

        return probe_unix(sock)
    return None
