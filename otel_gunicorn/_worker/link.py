"""What a freshly forked worker inherits from its arbiter: the configuration and where to report.

Set by the arbiter's after-fork handler in the child, read by the worker runtime in ``post_worker_init``. A module
of its own so the worker side never imports the arbiter side.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from otel_gunicorn._config import Config

#: attribute the arbiter sets on gunicorn's Worker object in pre_fork: the worker's ``gunicorn.worker.slot``
SLOT_ATTR = "otel_gunicorn_slot"


@dataclasses.dataclass(frozen=True)
class ArbiterLink:
    config: Config
    #: the arbiter's channel socket; None when metrics are off (spans and logs still work)
    channel_path: str | None
    #: the server's resource (service.name, service.instance.id, ...) so a worker's spans and logs match its metrics
    resource_attributes: dict[str, Any]


_link: ArbiterLink | None = None


def inherit(config: Config, channel_path: str | None, resource_attributes: dict[str, Any]) -> None:
    global _link
    _link = ArbiterLink(config, channel_path, resource_attributes)


def inherited() -> ArbiterLink | None:
    """The link to this worker's arbiter, or None outside a worker forked by a running otel_gunicorn arbiter."""
    return _link
