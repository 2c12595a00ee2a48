"""Where the counts of refused anonymous requests are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RefusedRequests:
    """The requests of one address, minute, route and status."""

    minute: datetime
    source_ip: str
    what: str
    outcome: int
    requests: int


class RefusalStore(Protocol):
    """Where the counts are kept."""

    def count(self, minute: datetime, source_ip: str, what: str, outcome: int) -> None:
        """Add one request to its row."""

    def purge(self, before: datetime) -> int:
        """Delete the rows of minutes before ``before``; how many."""

    def since(self, since: datetime) -> list[RefusedRequests]:
        """The rows from ``since`` on."""
