"""Requests nobody authenticated for, counted per address, minute, route and status instead of one audit row each.

An anonymous 401, an unknown path or an anonymous sign-in page touches no patient data; a row each in the six-year,
append-only audit trail let anyone grow it without bound (120 anonymous requests were 120 permanent rows). The
counts keep what a security office needs — who knocked, where, how often, with what answer — in bounded space.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from service.usecases.ports.refusals import RefusalStore, RefusedRequests

__all__ = ["RefusalCounter"]

log = logging.getLogger(__name__)
_PURGE_EVERY: Final = timedelta(hours=1)


class RefusalCounter:
    """Counts unauthenticated requests; drops rows past the audit trail's retention (at most hourly per process)."""

    def __init__(self, store: RefusalStore, clock: Callable[[], datetime], retention_days: int) -> None:
        self._store = store
        self._clock = clock
        self._retention = timedelta(days=retention_days)
        self._purged_at: datetime | None = None

    def count(self, source_ip: str | None, what: str, outcome: int) -> None:
        """One unauthenticated request, now."""
        now = self._clock()
        self._store.count(now.replace(second=0, microsecond=0), (source_ip or "")[:64], what[:200], outcome)
        if self._purged_at is None or now - self._purged_at > _PURGE_EVERY:
            self._purged_at = now
            self._store.purge(now - self._retention)

    def since(self, since: datetime) -> list[RefusedRequests]:
        """The counts from ``since`` on."""
        return self._store.since(since)
