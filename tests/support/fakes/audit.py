"""The audit trail in memory, as migrations 0006 and 0013 keep it: append-only rows hash-chained on insert, the
chain head, and the checkpoint each purge leaves. ``tamper``/``delete`` stand in for someone editing the table by
hand, which is what ``verify`` has to catch."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Final

from service.domain.audit_record import AuditRecord, StoredAudit
from service.usecases.audit import canonical_bytes
from service.usecases.ports.audit import GENESIS, AuditStore, ChainAnchor, ChainLink

__all__ = ["MIN_RETENTION_DAYS", "MemoryAuditStore"]

MIN_RETENTION_DAYS: Final = 365  # audit_min_retention_days() of migration 0013


class MemoryAuditStore:
    """Rows in id order; ids and seqs are gap-free here (no transaction rolls back in memory)."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock  # the database's now(), for the purge's cutoff
        self.links: list[ChainLink] = []
        self.head = ChainAnchor(0, GENESIS)
        self.checkpoints: list[ChainAnchor] = []
        self._next_id = 1

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """See AuditStore: the trigger's seq, prev_hash and hash, the head moved to the last row."""
        for record in records:
            seq = self.head.seq + 1
            digest = hashlib.sha256(canonical_bytes(seq, self.head.hash, record)).digest()
            self.links.append(ChainLink(self._next_id, seq, self.head.hash, digest, record))
            self._next_id += 1
            self.head = ChainAnchor(seq, digest)

    def audit_rows(
        self, since: datetime | None, until: datetime | None, patient_id: str | None, after_id: int, limit: int
    ) -> list[StoredAudit]:
        """See AuditStore."""
        rows = [
            link
            for link in sorted(self.links, key=lambda link: link.id)
            if link.id > after_id
            and _within(link.record.at, since, until)
            and (patient_id is None or link.record.patient_id == patient_id)
        ]
        return [_stored(link) for link in rows[:limit]]

    def chain_rows(
        self, since: datetime | None, until: datetime | None, after_seq: int, limit: int
    ) -> list[StoredAudit]:
        """See AuditStore."""
        rows = [
            link
            for link in sorted(self.links, key=lambda link: link.seq)
            if link.seq > after_seq and _within(link.record.at, since, until)
        ]
        return [_stored(link) for link in rows[:limit]]

    def purge_audit(self, retention_days: int) -> int:
        """See AuditStore: purge_audit_events() cuts the prefix before the first row still kept, and checkpoints its
        last row; a retention under the minimum is refused."""
        if retention_days < MIN_RETENTION_DAYS:
            raise ValueError(f"audit retention must be at least {MIN_RETENTION_DAYS} days (asked: {retention_days})")
        cutoff = self._clock() - timedelta(days=retention_days)
        chain = sorted(self.links, key=lambda link: link.seq)
        keep_from = next((link.seq for link in chain if link.record.at >= cutoff), None)
        cut = [link for link in chain if keep_from is None or link.seq < keep_from]
        if not cut:
            return 0
        tail = cut[-1]
        self.links = [link for link in self.links if link.seq > tail.seq]
        self.checkpoints.append(ChainAnchor(tail.seq, tail.hash))
        return len(cut)

    @contextlib.contextmanager
    def audit_chain(self) -> Iterator[tuple[ChainAnchor, ChainAnchor, Iterator[ChainLink]]]:
        """See AuditStore: a snapshot (a copy), so appends meanwhile are not seen."""
        anchor = max(self.checkpoints, key=lambda c: c.seq) if self.checkpoints else ChainAnchor(0, GENESIS)
        links = sorted((link for link in self.links if link.seq > anchor.seq), key=lambda link: link.seq)
        yield anchor, self.head, iter(links)

    def tamper(self, seq: int, **changes: object) -> None:
        """Edit the row at ``seq`` behind the trigger's back: record fields, or ``hash``/``prev_hash`` themselves."""
        index = next(i for i, link in enumerate(self.links) if link.seq == seq)
        link = self.links[index]
        chain = {k: changes.pop(k) for k in ("hash", "prev_hash") if k in changes}
        record = dataclasses.replace(link.record, **changes)  # type: ignore[arg-type]
        self.links[index] = dataclasses.replace(link, record=record, **chain)  # type: ignore[arg-type]

    def delete(self, *seqs: int) -> None:
        """Delete rows behind the purge's back (the head stays where it was)."""
        self.links = [link for link in self.links if link.seq not in seqs]


def _within(at: datetime, since: datetime | None, until: datetime | None) -> bool:
    return (since is None or at >= since) and (until is None or at < until)


def _stored(link: ChainLink) -> StoredAudit:
    return StoredAudit(link.id, link.record, link.seq, link.hash)


_: type[AuditStore] = MemoryAuditStore
