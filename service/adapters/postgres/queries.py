"""Named SQL files, loaded once ("-- name: x" starts a query; the lines below it are its text).

queries.sql holds the core's statements; a feature with its own tables keeps its SQL in its own file beside its
migration (bulk_import.sql, calibration.sql, cds.sql, subscriptions.sql), in the same format.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

__all__ = ["query"]

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@cache
def _all(file: str) -> dict[str, str]:
    text = (resources.files("service.adapters.postgres") / file).read_text(encoding="utf-8")
    parts = _HEADER.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        named[name] = "\n".join(lines).strip().rstrip(";")
    return named


def query(name: str, file: str = "queries.sql") -> LiteralString:
    """The SQL of a named query in one of the package's SQL files (a KeyError is a programming error)."""
    # The text comes from a file shipped with the package, never from input: it is a literal in all but syntax.
    return _all(file)[name]
