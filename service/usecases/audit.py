"""The audit trail: who read or changed which patient's data, when, from where, with what outcome.

One row per patient touched (a worklist page of fifty patients is fifty rows), so "who saw this patient" is one
indexed query. Rows are append-only in the database; the retention purge is the only delete.

The rows form a hash chain (migration 0013): each row has a gap-free ``seq``, the previous row's hash and its own,
``sha256(canonical_bytes(...))``. The database computes it on insert; :func:`verify_chain` recomputes it here, so an
edited row (its hash no longer matches), a deleted row (a gap in ``seq``, or a broken ``prev_hash``) and deleted
newest rows (the chain head is ahead of the last row) are found and reported by position.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from service.domain.audit_record import AuditRecord, StoredAudit
from service.usecases.ports.audit import AuditStore, ChainAnchor, ChainLink

__all__ = [
    "SYSTEM_ACTOR",
    "AuditLog",
    "ChainProblem",
    "ChainReport",
    "canonical_bytes",
    "system_record",
    "verify_chain",
]

# The actor of what refracture does on its own behalf: bulk import, event-feed fetches, CLI dumps.
SYSTEM_ACTOR: Final = "refracture"  # as write-backs have always been recorded


def system_record(
    at: datetime,
    action: str,
    what: str,
    *,
    patient_id: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    detail: str | None = None,
    outcome: int = 200,
) -> AuditRecord:
    """A row for what refracture did under its own name (no person asked): ``what`` names the job or command."""
    return AuditRecord(
        at=at,
        actor=SYSTEM_ACTOR,
        action=action,
        what=what,
        outcome=outcome,
        auth_source="system",
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        detail=detail,
    )


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Where the chain breaks and how."""

    seq: int
    row_id: int | None
    what: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" + (f" (row id {self.row_id})" if self.row_id is not None else "")
        return f"{where}: {self.what}"


@dataclass(slots=True)
class ChainReport:
    """What `refracture audit verify` found."""

    anchor: ChainAnchor
    head: ChainAnchor
    rows: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        """No edited, missing or reordered row."""
        return not self.problems


def _field(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    encoded = value.encode("utf-8")
    return struct.pack(">i", len(encoded)) + encoded


def canonical_bytes(seq: int, prev_hash: bytes, record: AuditRecord) -> bytes:
    """The bytes a row's hash covers (the SQL function audit_event_bytes of migration 0013, byte for byte).

    prev_hash (32 bytes), then seq, at (UTC, microseconds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``), actor, client_id,
    auth_source, roles (a 4-byte big-endian count, then each role), action, what, resource_type, resource_id,
    patient_id, outcome, source_ip, request_id, detail; each text as its UTF-8 length (4 bytes, big-endian, signed)
    and its bytes, NULL as the length -1. Length prefixes make the encoding unambiguous without escaping.
    """
    at = record.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parts = [prev_hash, _field(str(seq)), _field(at), _field(record.actor), _field(record.client_id)]
    parts += [_field(record.auth_source), struct.pack(">i", len(record.roles)), *(_field(r) for r in record.roles)]
    parts += [_field(record.action), _field(record.what), _field(record.resource_type), _field(record.resource_id)]
    parts += [_field(record.patient_id), _field(str(record.outcome)), _field(record.source_ip)]
    parts += [_field(record.request_id), _field(record.detail)]
    return b"".join(parts)


def verify_chain(
    links: Iterable[ChainLink], anchor: ChainAnchor, head: ChainAnchor, recorded: Sequence[ChainAnchor] = ()
) -> ChainReport:
    """Recompute the chain from the anchor (the purge's checkpoint, or the start) to the head.

    Args:
        links: the rows in seq order, up to the head.
        anchor: what the first row must follow.
        head: the newest row's seq and hash as the database's chain head holds them.
        recorded: seq and hash pairs kept outside the database (an earlier verify's head line, a SIEM's copy): a
            chain rewritten consistently from some row on still differs from these.
    """
    report = ChainReport(anchor, head)
    outside = {r.seq: r.hash for r in recorded}
    if anchor.seq in outside and outside.pop(anchor.seq) != anchor.hash:
        report.problems.append(ChainProblem(anchor.seq, None, "the purge checkpoint differs from the recorded hash"))
    expected_seq, expected_prev = anchor.seq + 1, anchor.hash
    for link in links:
        if link.seq in outside and outside.pop(link.seq) != link.hash:
            report.problems.append(
                ChainProblem(link.seq, link.id, "differs from the hash recorded outside: the chain was rewritten")
            )
        report.rows += 1
        if link.seq != expected_seq:
            missing = f"{expected_seq}" if link.seq == expected_seq + 1 else f"{expected_seq}..{link.seq - 1}"
            report.problems.append(ChainProblem(link.seq, link.id, f"rows seq {missing} are missing (deleted)"))
        elif link.prev_hash != expected_prev:
            report.problems.append(
                ChainProblem(link.seq, link.id, "does not follow the row before it (that row was edited or replaced)")
            )
        if hashlib.sha256(canonical_bytes(link.seq, link.prev_hash, link.record)).digest() != link.hash:
            report.problems.append(ChainProblem(link.seq, link.id, "edited: its content does not match its hash"))
        expected_seq, expected_prev = link.seq + 1, link.hash
    if head.seq >= expected_seq:
        missing = f"{expected_seq}" if head.seq == expected_seq else f"{expected_seq}..{head.seq}"
        report.problems.append(ChainProblem(head.seq, None, f"rows seq {missing} are missing (the newest deleted)"))
    elif head.seq == expected_seq - 1 and head.hash != expected_prev:
        report.problems.append(ChainProblem(head.seq, None, "the newest row differs from the chain head"))
    elif head.seq < expected_seq - 1:
        report.problems.append(ChainProblem(head.seq, None, "rows after the chain head (head edited)"))
    for seq in sorted(outside):
        where = "purged before the checkpoint" if seq < anchor.seq else "not in the trail"
        report.problems.append(ChainProblem(seq, None, f"a recorded hash cannot be checked: the row is {where}"))
    return report


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

    def verify(self, recorded: Sequence[ChainAnchor] = ()) -> ChainReport:
        """Recompute the hash chain (`refracture audit verify`), and compare it with hashes kept elsewhere."""
        with self._store.audit_chain() as (anchor, head, links):
            return verify_chain(links, anchor, head, recorded)

    def export(
        self, since: datetime | None, until: datetime | None = None, after_seq: int = 0, page: int = 1000
    ) -> Iterator[StoredAudit]:
        """Every row from ``since`` (or after the chain position ``after_seq``) on, in chain order, read page by page
        (the SIEM export). Chain order is commit order, so a reader that carries on after the last seq it has gets
        every row exactly once, even one whose ``at`` is older than rows already read."""
        after = after_seq
        while True:
            rows = self._store.chain_rows(since, until, after, page)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1].seq or after
