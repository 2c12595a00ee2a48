"""The audit chain's canonical bytes and its check, without a database: a golden vector (computed by migration 0013's
SQL function audit_event_bytes, and by canonical_bytes here) that anyone re-implementing the check can test against,
and verify_chain's findings on hand-made chains."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

from service.domain.audit_record import AuditRecord
from service.usecases.audit import canonical_bytes, verify_chain
from service.usecases.ports.audit import GENESIS, ChainAnchor, ChainLink

RECORD = AuditRecord(
    at=datetime(2026, 11, 25, 18, 41, 19, 779123, tzinfo=UTC),
    actor="coordinator.one",
    client_id=None,
    auth_source="session",
    roles=("care-coordinator", "administrator"),
    action="read",
    what="GET /fhir/{resource_type}/{resource_id}",
    resource_type="Observation",
    resource_id="o1",
    patient_id="p1",
    outcome=200,
    source_ip="10.0.0.7",
    request_id="req-42",
    detail="Zürich ✓",
)
# What PostgreSQL 15 computed for this row as seq 1 (sha256(audit_event_bytes(row)) after the INSERT trigger).
GOLDEN = "c7749a090b3de8d1b8b024b3df7bb7304dd0c287f2b4059ede7096d80f8beb9b"


def test_the_canonical_bytes_match_the_databases() -> None:
    data = canonical_bytes(1, GENESIS, RECORD)
    assert data.startswith(GENESIS + b"\x00\x00\x00\x01" + b"1")  # prev_hash, then seq as a length-prefixed text
    assert b"\xff\xff\xff\xff" in data  # client_id NULL: the length -1
    assert b"\x00\x00\x00\x02\x00\x00\x00\x10care-coordinator" in data  # roles: a count, then each role
    assert "Zürich ✓".encode() in data
    assert hashlib.sha256(data).hexdigest() == GOLDEN


def test_length_prefixes_keep_fields_apart() -> None:
    moved = replace(RECORD, resource_type="Observationo", resource_id="1")
    assert canonical_bytes(1, GENESIS, moved) != canonical_bytes(1, GENESIS, RECORD)
    assert canonical_bytes(1, GENESIS, replace(RECORD, client_id="")) != canonical_bytes(1, GENESIS, RECORD)


def chain(n: int) -> list[ChainLink]:
    links: list[ChainLink] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        record = replace(RECORD, request_id=f"req-{seq}")
        digest = hashlib.sha256(canonical_bytes(seq, prev, record)).digest()
        links.append(ChainLink(100 + seq, seq, prev, digest, record))
        prev = digest
    return links


def test_verify_finds_edits_gaps_and_a_rewrite() -> None:
    links = chain(6)
    head = ChainAnchor(6, links[-1].hash)
    assert verify_chain(links, ChainAnchor(0, GENESIS), head).intact
    edited = [*links[:2], replace(links[2], record=replace(links[2].record, actor="x")), *links[3:]]
    assert [str(p) for p in verify_chain(edited, ChainAnchor(0, GENESIS), head).problems] == [
        "seq 3 (row id 103): edited: its content does not match its hash"
    ]
    gap = [links[0], *links[3:]]
    assert [str(p) for p in verify_chain(gap, ChainAnchor(0, GENESIS), head).problems] == [
        "seq 4 (row id 104): rows seq 2..3 are missing (deleted)"
    ]
    purged = verify_chain(links[2:], ChainAnchor(2, links[1].hash), head)
    assert purged.intact
    assert purged.rows == 4
    recorded = [ChainAnchor(5, b"\x01" * 32)]
    assert [str(p) for p in verify_chain(links, ChainAnchor(0, GENESIS), head, recorded).problems] == [
        "seq 5 (row id 105): differs from the hash recorded outside: the chain was rewritten"
    ]
