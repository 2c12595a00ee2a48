"""An audited event and its stored row: plain values, so the FHIR mapping (AuditEvent) and the use cases share them
without the mapping importing a use case."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["AuditRecord", "StoredAudit"]


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
    """An audit row (with its place in the hash chain)."""

    id: int
    record: AuditRecord
    seq: int | None = None
    hash: bytes | None = None
