"""The refused-request counts in memory, as refusals.sql keeps them (migration 0015)."""

from __future__ import annotations

from datetime import datetime

from service.usecases.ports.refusals import RefusalStore, RefusedRequests

__all__ = ["MemoryRefusalStore"]

_Key = tuple[datetime, str, str, int]


class MemoryRefusalStore:
    """One count per minute, address, route and status (the table's primary key, upserted)."""

    def __init__(self) -> None:
        self.counts: dict[_Key, int] = {}
        self.purges: list[datetime] = []  # each purge's ``before``, so a test sees how often it ran

    def count(self, minute: datetime, source_ip: str, what: str, outcome: int) -> None:
        """See RefusalStore: ON CONFLICT ... requests + 1."""
        key = (minute, source_ip, what, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def purge(self, before: datetime) -> int:
        """See RefusalStore: minute < before."""
        self.purges.append(before)
        old = [key for key in self.counts if key[0] < before]
        for key in old:
            del self.counts[key]
        return len(old)

    def since(self, since: datetime) -> list[RefusedRequests]:
        """See RefusalStore: minute >= since, ordered by the key."""
        return [RefusedRequests(*key, requests=n) for key, n in sorted(self.counts.items()) if key[0] >= since]


_: type[RefusalStore] = MemoryRefusalStore
