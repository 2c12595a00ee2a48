"""Where the audit trail is kept, and the hash chain as the store hands it out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

from service.domain.audit_record import AuditRecord, StoredAudit

# The previous hash of the first row ever appended.
GENESIS: Final = bytes(32)


@dataclass(frozen=True, slots=True)
class ChainLink:
    """A row as the chain sees it."""

    id: int
    seq: int
    prev_hash: bytes
    hash: bytes
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class ChainAnchor:
    """A point of the chain: the head (newest row) or the checkpoint the purge left (last purged row)."""

    seq: int
    hash: bytes


class AuditStore(Protocol):
    """Where the trail is kept."""

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Insert rows (never update)."""

    def audit_rows(
        self, since: datetime | None, until: datetime | None, patient_id: str | None, after_id: int, limit: int
    ) -> list[StoredAudit]:
        """Rows in id order, filtered."""

    def chain_rows(
        self, since: datetime | None, until: datetime | None, after_seq: int, limit: int
    ) -> list[StoredAudit]:
        """Rows in chain order (seq, which is commit order: the chain head's lock is held until commit), filtered."""

    def purge_audit(self, retention_days: int) -> int:
        """Delete rows older than the retention; how many."""

    def audit_chain(self) -> AbstractContextManager[tuple[ChainAnchor, ChainAnchor, Iterator[ChainLink]]]:
        """One consistent snapshot: the purge's last checkpoint (or the start), the head, the rows up to it."""
