"""Logging for every process: one JSON object per line (or plain text for people), and no patient data in any line.

Every process calls ``configure_logging`` (the API also hands ``logging_config`` to uvicorn, whose worker processes
configure themselves from it). Read from the environment, not Settings, so logging works before Settings can be
read (and reports why it cannot):

- ``REFRACTURE_LOG_FORMAT``: ``json`` (default) or ``text``;
- ``REFRACTURE_LOG_LEVEL``: ``DEBUG``, ``INFO`` (default), ``WARNING``, ``ERROR`` or ``CRITICAL``.

Our own lines name resources by type and id only. What third parties might put in a line is decided here, in the
formatter, so it holds whichever library logs. An exception (in a message's arguments or a traceback) keeps its type
and, by the rule in ``service.platform.log_redaction`` (docs/security.md), its message only when that cannot carry
patient data — a missing module, a refused connection, a bad setting are named, with the fix when it is known; a
pydantic ValidationError (which quotes the input) or a PostgreSQL error's DETAIL (key values) never. Tracebacks keep
their frames but never a local variable, and warnings keep their category and location but not their text.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import sys
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, TextIO

from service.platform.log_redaction import chain, describe, exception_text, hint, qualified

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "log_format",
    "log_level",
    "logging_config",
]

# Set by the API's access-log middleware for the duration of a request; every line logged meanwhile carries it.
REQUEST_ID: ContextVar[str | None] = ContextVar("refracture_request_id", default=None)

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Third-party loggers whose ordinary lines carry patient data: httpx and httpcore log every request's URL (FHIR URLs
# and search parameters name patients and identifiers) at INFO and DEBUG.
_QUIETER: Final = {"httpx": "WARNING", "httpcore": "WARNING"}
# uvicorn's access lines carry the raw path and query string (ids, names, MRNs): the command turns them off, and
# they are dropped here too in case uvicorn is started another way. The API logs its own, with the route template.
_DROPPED: Final = frozenset({"uvicorn.access"})

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_LEADING_NAME: Final = re.compile(r"[A-Za-z_][\w.]*")
# logging.captureWarnings formats a warning as "file:line: Category: text"; the text can quote values.
_WARNING_LOCATION: Final = re.compile(r"^(?P<where>.*?:\d+): (?P<category>[A-Za-z_]\w*):")


def log_format() -> Literal["json", "text"]:
    """REFRACTURE_LOG_FORMAT: ``json`` (default) or ``text``."""
    value = os.environ.get("REFRACTURE_LOG_FORMAT", "json").strip().lower() or "json"
    if value not in ("json", "text"):
        raise ValueError(f"REFRACTURE_LOG_FORMAT must be json or text, not {value!r}")
    return "json" if value == "json" else "text"


def log_level() -> str:
    """REFRACTURE_LOG_LEVEL: a standard level name (INFO by default)."""
    value = os.environ.get("REFRACTURE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    # Not uvicorn's TRACE: at that level it logs whole ASGI messages, bodies included.
    if value not in LEVELS:
        raise ValueError(f"REFRACTURE_LOG_LEVEL must be one of {', '.join(LEVELS)}, not {value!r}")
    return value


def logging_config(fmt: str | None = None, level: str | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a refracture process: one handler on stderr, our formatter on it.

    Args:
        fmt: ``json`` or ``text``; defaults to REFRACTURE_LOG_FORMAT.
        level: the root level; defaults to REFRACTURE_LOG_LEVEL.
    """
    formatter = JsonFormatter if (fmt or log_format()) == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"refracture": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"stderr": {"()": f"{__name__}._StderrHandler", "formatter": "refracture"}},
        "loggers": {
            # uvicorn's own configuration (if it ran first) gives its loggers their own handlers and formats.
            **{name: {"level": "NOTSET", "handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")},
            **{name: {"level": quieter} for name, quieter in _QUIETER.items()},
        },
        "root": {"level": level or log_level(), "handlers": ["stderr"]},
    }


def configure_logging(fmt: str | None = None, level: str | None = None) -> None:
    """Configure this process's logging (idempotent: a second call replaces the first)."""
    logging.config.dictConfig(logging_config(fmt, level))
    # Warnings become log lines (their text withheld by the formatter) instead of raw text on stderr.
    logging.captureWarnings(True)
    # A command that dies prints its traceback through the formatter, not Python's hook, which prints the message.
    sys.excepthook = _log_uncaught


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is logged (test runners swap it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.addFilter(lambda record: record.name not in _DROPPED)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("refracture").critical("uncaught %s", value, exc_info=(kind, value, tb))


# ---------------------------------------------------------------------------------------------------------------
# What a line may say


def message(record: logging.LogRecord) -> str:
    """The record's message with exception texts withheld from its arguments."""
    args: Any = record.args
    if isinstance(args, Mapping):
        # Celery's task lines: "%(exc)s" is the exception's repr, already a string by the time it is logged.
        args = {key: _type_of_repr(value) if key == "exc" else _withheld(value) for key, value in args.items()}
    elif isinstance(args, tuple):
        args = tuple(_withheld(arg) for arg in args)
    text = str(record.msg)
    if args:
        try:
            text = text % args
        except (TypeError, ValueError, KeyError):
            text = f"{text} (arguments withheld: they do not fit the message)"
    if record.name == "py.warnings":
        found = _WARNING_LOCATION.match(text)
        text = f"{found['category']} at {found['where']} (text withheld)" if found else "a warning (text withheld)"
    return text


class _Described(str):
    """What a line may say of an exception, in place of the exception: the same under %s and %r."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _withheld(value: object) -> object:
    return _Described(describe(value)) if isinstance(value, BaseException) else value


def _type_of_repr(value: object) -> str:
    # Celery's failure lines: the exception's repr, already a string; the record's exc_info says the rest.
    if isinstance(value, BaseException):
        return qualified(type(value))
    found = _LEADING_NAME.match(str(value))
    return found.group(0) if found else "an exception"


def exception_types(exc: BaseException) -> list[str]:
    """The exception's type, then the types of its causes and contexts (most recent first)."""
    return [qualified(type(one)) for one in chain(exc)]


def exception_messages(exc: BaseException) -> list[str | None]:
    """The messages of ``exception_types``' exceptions, None where withheld (docs/security.md)."""
    return [exception_text(one) for one in chain(exc)]


def frames(tb: TracebackType | None) -> list[str]:
    """Where the exception passed, as ``file:line in function``: no source text, no message, no locals."""
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)]


def _exc_info(record: logging.LogRecord) -> _ExcInfo | None:
    info = record.exc_info
    if info and info[0] is not None and info[1] is not None:
        return info[0], info[1], info[2]
    return None


# ---------------------------------------------------------------------------------------------------------------
# The two formats


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    # Only what our code passes as extra={"fields": {...}}: Celery's extra={"data": ...} holds arguments and
    # tracebacks, so arbitrary extras never reach a line.
    given = getattr(record, "fields", None)
    if not isinstance(given, Mapping):
        return {}
    return {str(key): value for key, value in given.items() if isinstance(value, str | int | float | bool | None)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id when there is one, fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message(record),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            line["request_id"] = request_id
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        exc = _exc_info(record)
        if exc:
            line["exc_type"] = exception_types(exc[1])
            line["exc_message"] = exception_messages(exc[1])
            found = hint(exc[1])
            if found:
                line["hint"] = found
            line["exc_frames"] = frames(exc[2])
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """For people in development: ``time LEVEL logger [request id] message`` and a traceback without messages."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).isoformat(sep=" ", timespec="milliseconds")
        request_id = REQUEST_ID.get()
        text = f"{when} {record.levelname} {record.name}{f' [{request_id}]' if request_id else ''}: {message(record)}"
        extra = _fields(record)
        if extra:
            text += " " + " ".join(f"{key}={value}" for key, value in extra.items())
        exc = _exc_info(record)
        if exc:
            pairs = zip(exception_types(exc[1]), exception_messages(exc[1]), strict=True)
            text += "\n  " + " <- ".join(
                f"{kind}: {said}" if said else f"{kind} (message withheld)" for kind, said in pairs
            )
            found = hint(exc[1])
            if found:
                text += f"\n  hint: {found}"
            text += "".join(f"\n    {where}" for where in frames(exc[2]))
        if record.stack_info:
            text += "\n" + record.stack_info
        return text
