"""Stored resources as the use cases name and send them: a (type, id) key and the JSON text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ResourceKey = tuple[str, str]  # (resource type, id)


@dataclass(frozen=True, slots=True)
class StoredText:
    """A stored resource as JSON text, ready to send."""

    body: str
    version_id: int
    last_updated: datetime
