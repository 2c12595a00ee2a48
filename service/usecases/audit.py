"""The audit trail: who read or changed which patient's data, when, from where, with what outcome.

One row per patient touched (a worklist page of fifty patients is fifty rows), so "who saw this patient" is one
indexed query. Rows are append-only in the database; the retention purge is the only delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["AuditLog", "AuditRecord", "AuditStore", "StoredAudit"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited event (before it has a row id)."""

    at: datetime
    actor: str
    action: str  # read | search | create | update | transaction | batch | export | write-back | alert-action | ...
    what: str  # the route template or the job, never a URL with its query string
    outcome: int  # HTTP status, or the write-back's answer
    client_id: str | None = None
    auth_source: str | None = None
    roles: tuple[str, ...] = ()
    resource_type: str | None = None
    resource_id: str | None = None
    patient_id: str | None = None
    source_ip: str | None = None
    request_id: str | None = None
    detail: str | None = None  # never patient data: counts, filters' names, the EHR's status line


@dataclass(frozen=True, slots=True)
class StoredAudit:
    """An audit row."""

    id: int
    record: AuditRecord


class AuditStore(Protocol):
    """Where the trail is kept."""

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Insert rows (never update)."""

    def audit_rows(
        self, since: datetime | None, until: datetime | None, patient_id: str | None, after_id: int, limit: int
    ) -> list[StoredAudit]:
        """Rows in id order, filtered."""

    def purge_audit(self, retention_days: int) -> int:
        """Delete rows older than the retention; how many."""


class AuditLog:
    """Records and reads the trail."""

    def __init__(self, store: AuditStore, retention_days: int) -> None:
        self._store = store
        self._retention_days = retention_days

    def record(self, records: Iterable[AuditRecord]) -> None:
        """Append events."""
        rows = list(records)
        if rows:
            self._store.append_audit(rows)

    def read(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        patient_id: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[StoredAudit]:
        """A page of the trail, oldest first."""
        return self._store.audit_rows(since, until, patient_id, after_id, limit)

    def purge(self) -> int:
        """Drop what is older than the retention."""
        return self._store.purge_audit(self._retention_days)
