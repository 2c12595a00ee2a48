"""FHIR JSON in and out without losing a decimal's digits (1.50 stays 1.50, as FHIR requires)."""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any, Final

import orjson

from service.platform.errors import Problem, refuse

__all__ = ["content_hash", "dumps", "parse"]


# orjson writes integers of at most 64 bits; larger ones are kept as Decimal, which it writes digit for digit.
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
# The escape \u0000 preceded by an even number of backslashes (an odd number would make it the text "\u0000").
_NUL_ESCAPE: Final = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _integer(token: str) -> int | Decimal:
    value = int(token)  # ValueError past Python's 4,300-digit limit: not JSON refracture reads
    return value if _INT64_MIN <= value <= _UINT64_MAX else Decimal(token)


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                # Two values for one key: which one the sender meant is unknowable, so refuse, not guess.
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def parse(raw: bytes) -> Any:
    """Parse a request body as strict JSON, keeping decimals exact.

    Args:
        raw: the body bytes (UTF-8, as FHIR requires).

    Returns:
        The JSON value, with non-integer numbers as ``Decimal``.

    Raises:
        RefractureError: MALFORMED for anything that is not strict JSON (NaN, duplicate keys, bad UTF-8), and for
            U+0000, which no FHIR string holds and PostgreSQL's jsonb cannot store.
    """
    if b"\\u0000" in raw and _NUL_ESCAPE.search(raw):
        raise refuse(Problem.MALFORMED, "structure", "the JSON contains the character U+0000 (NUL)")
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text,
            parse_float=Decimal,
            parse_int=_integer,
            parse_constant=_no_constants,
            object_pairs_hook=_no_duplicate_keys,
        )
    except UnicodeDecodeError:
        raise refuse(Problem.MALFORMED, "structure", "the body is not UTF-8 text") from None
    except RecursionError:
        raise refuse(Problem.MALFORMED, "structure", "the JSON is nested too deeply") from None
    except ValueError as exc:
        raise refuse(Problem.MALFORMED, "structure", f"the body is not valid JSON: {exc}") from None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Serialise to compact JSON bytes; ``Decimal`` values are written with their exact digits."""
    return orjson.dumps(value, default=_default)


_SERVER_META = ("versionId", "lastUpdated")


def content_hash(resource: dict[str, Any]) -> bytes:
    """sha256 of a resource's content: canonical JSON (sorted keys) without the server's meta.versionId/lastUpdated.

    Re-sending identical content gives the same hash, so it makes no new version.
    """
    meta = resource.get("meta")
    if isinstance(meta, dict) and any(key in meta for key in _SERVER_META):
        trimmed = {key: value for key, value in meta.items() if key not in _SERVER_META}
        resource = {**resource, "meta": trimmed} if trimmed else {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(orjson.dumps(resource, default=_default, option=orjson.OPT_SORT_KEYS)).digest()
