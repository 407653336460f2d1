"""What the worker's OTLP log export hands the OpenTelemetry SDK: a record whose attributes are the event's own.

Runs in a worker, on the thread that logs, for every record the SDK's ``LoggingHandler`` exports
(``OTEL_LOGS_EXPORTER=otlp`` or ``console``). That handler makes every attribute of the ``logging.LogRecord`` it does
not know an OpenTelemetry attribute. Right for stdlib records (those attributes are what was passed as ``extra=``),
wrong for structlog's: ``ProcessorFormatter.wrap_for_formatter`` hands stdlib logging the whole event dictionary as
the message and its own bookkeeping as ``extra`` (``_logger``, the stdlib logger object, and ``_name``, the method
name). The SDK then exported ``_name=info`` and answered ``_logger`` with a warning of its own ("Invalid type ... for
attribute value") on every line, itself a record exported with the request's trace; and one value the protobuf
encoder cannot take (any object) failed the whole batch.

:func:`exportable` gives the SDK a copy instead: the event as the body, the event's own keys as attributes, each
value one the log data model can carry. docs/logging.md says what a user gets.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from otel_gunicorn._instruments import SLOT_ATTRIBUTE

#: what ``wrap_for_formatter`` adds to the record (structlog's ``ProcessorFormatter`` recognises its records by them)
_STRUCTLOG_META = ("_logger", "_name")
#: the attributes every ``LogRecord`` has (and ``message``/``asctime``, which formatting adds): the SDK never exports
#: them as attributes, so an event key of the same name cannot be set on the record under its own name
RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
#: prefix of an event key that is also a :data:`RECORD_FIELDS` name (``name``, ``module``, ``filename``, ...)
RENAMED_PREFIX = "structlog."
#: keys otel_gunicorn's processors add to every event (``configure_structlog``): the exported record carries them
#: in fields of its own (severity, scope, timestamp, trace context; ``process.pid`` in the resource) or, like the
#: records of stdlib logging, not at all. ``event`` becomes the body; ``exc_info`` the ``exception.*`` attributes.
NOT_ATTRIBUTES = frozenset(
    {"event", "exc_info", "level", "logger", "timestamp", "trace_id", "span_id", "trace_flags", "pid", "thread_id"}
    | {SLOT_ATTRIBUTE}
)
_PLAIN = (str, bool, int, float, bytes, type(None))
_SEQUENCES = (list, tuple, set, frozenset)


def exportable(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` itself when the SDK can export it as it is, else a copy it can.

    A structlog event becomes a record whose message is the event and whose attributes are the event's other keys
    (see :data:`NOT_ATTRIBUTES`, :data:`RENAMED_PREFIX`); a stdlib record keeps its ``extra`` keys. Values the log
    data model has no type for become strings (:func:`attribute_value`). ``record`` itself is never changed: other
    handlers format the same object.
    """
    attributes = vars(record)
    if all(key in attributes for key in _STRUCTLOG_META) and isinstance(record.msg, dict):
        return _from_event(record, record.msg)
    extras = {key: value for key, value in attributes.items() if key not in RECORD_FIELDS}
    if all(_exportable_value(value) for value in extras.values()):
        return record
    copy = logging.makeLogRecord(attributes)
    _set_attributes(copy, extras, rename=False)
    return copy


def attribute_value(value: Any) -> Any:
    """``value`` as the log data model's ``AnyValue``: strings, booleans, numbers, bytes and ``None`` as they are,
    lists, tuples and sets as arrays and mappings as maps (string keys), both cleaned the same way; anything else as
    its ``str()``. Raises whatever that ``str()`` raises."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {str(key): attribute_value(item) for key, item in value.items()}
    if isinstance(value, _SEQUENCES):
        return [attribute_value(item) for item in value]
    return str(value)


def _exportable_value(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _exportable_value(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(_exportable_value(item) for item in value)
    return False


def _from_event(record: logging.LogRecord, event: dict[str, Any]) -> logging.LogRecord:
    copy = logging.makeLogRecord({k: v for k, v in vars(record).items() if k not in _STRUCTLOG_META})
    message = event.get("event")
    copy.msg = message if isinstance(message, str) else "" if message is None else _str_or_empty(message)
    copy.args = ()
    copy.exc_info = _exc_info(event.get("exc_info"))
    _set_attributes(copy, {k: v for k, v in event.items() if k not in NOT_ATTRIBUTES}, rename=True)
    return copy


def _set_attributes(record: logging.LogRecord, attributes: Mapping[str, Any], rename: bool) -> None:
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            continue
        name = RENAMED_PREFIX + key if rename and key in RECORD_FIELDS else key  # never a record field
        try:
            record.__dict__[name] = attribute_value(value)
        except Exception:  # noqa: BLE001 - a value whose str() fails is left out, never the record
            record.__dict__.pop(name, None)


def _exc_info(value: Any) -> Any:
    """structlog's ``exc_info`` (``True``, an exception or an ``exc_info`` tuple) as a record's ``exc_info``."""
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3:
        return value
    if value is True:
        info = sys.exc_info()  # the handler runs inside the log call, in the caller's except block
        return info if info[0] is not None else None
    return None


def _str_or_empty(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - the record is still exported
        return ""
