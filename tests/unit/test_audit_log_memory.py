"""AuditLog over the in-memory trail: record and read, the hash chain's verify, the SIEM export, the purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.domain.audit_record import AuditRecord
from service.usecases.audit import AuditLog
from service.usecases.ports.audit import GENESIS, AuditStore, ChainAnchor
from tests.support.clock import ManualClock
from tests.support.fakes import MemoryAuditStore

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _record(minutes: int, patient: str | None = "p1", actor: str = "dr-a") -> AuditRecord:
    return AuditRecord(
        at=T0 + timedelta(minutes=minutes), actor=actor, action="read", what="/fhir/Patient/{id}", outcome=200,
        roles=("clinician",), patient_id=patient,
    )  # fmt: skip


def _log(retention_days: int = 365) -> tuple[AuditLog, MemoryAuditStore, ManualClock[datetime]]:
    clock = ManualClock(T0 + timedelta(days=1))
    store = MemoryAuditStore(clock)
    port: AuditStore = store
    return AuditLog(port, retention_days), store, clock


def _filled(rows: int = 5) -> tuple[AuditLog, MemoryAuditStore, ManualClock[datetime]]:
    log, store, clock = _log()
    log.record(_record(i, patient=f"p{i % 2}") for i in range(rows))
    return log, store, clock


def test_rows_are_read_in_order_filtered_and_paged() -> None:
    log, _, _ = _filled(6)
    log.record([])  # nothing to append
    assert [r.id for r in log.read()] == [1, 2, 3, 4, 5, 6]
    assert [r.record.patient_id for r in log.read(patient_id="p1")] == ["p1"] * 3
    assert [r.id for r in log.read(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))] == [3, 4]
    assert [r.id for r in log.read(after_id=2, limit=2)] == [3, 4]


def test_each_row_links_to_the_one_before_and_the_chain_verifies() -> None:
    log, store, _ = _filled()
    assert [link.seq for link in store.links] == [1, 2, 3, 4, 5]
    assert store.links[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(store.links, store.links[1:], strict=False))
    report = log.verify()
    assert report.intact
    assert report.rows == 5
    assert report.head == ChainAnchor(5, store.links[-1].hash)


def test_verify_catches_an_edited_row_and_says_where() -> None:
    log, store, _ = _filled()
    store.tamper(3, actor="someone-else")
    report = log.verify()
    assert not report.intact
    assert [(p.seq, p.row_id) for p in report.problems] == [(3, 3)]
    assert "edited" in report.problems[0].what


def test_verify_catches_an_edited_row_whose_hash_was_recomputed() -> None:
    log, store, _ = _filled()
    store.tamper(3, hash=bytes(32))
    problems = log.verify().problems
    assert [p.seq for p in problems] == [3, 4]
    assert "does not follow" in problems[1].what


def test_verify_catches_deleted_rows() -> None:
    log, store, _ = _filled()
    store.delete(2, 3)
    problems = log.verify().problems
    assert [(p.seq, p.what) for p in problems] == [(4, "rows seq 2..3 are missing (deleted)")]


def test_verify_catches_the_newest_rows_deleted() -> None:
    log, store, _ = _filled()
    store.delete(5)
    problems = log.verify().problems
    assert [(p.seq, p.what) for p in problems] == [(5, "rows seq 5 are missing (the newest deleted)")]


def test_a_consistently_rewritten_chain_differs_from_a_hash_kept_outside() -> None:
    log, _, clock = _filled()
    kept = log.verify().head
    rewritten = MemoryAuditStore(clock)
    rewritten.append_audit([_record(i, actor="forger") for i in range(5)])
    report = AuditLog(rewritten, 365).verify(recorded=[kept])
    assert [p.seq for p in report.problems] == [5]
    assert "rewritten" in report.problems[0].what


def test_the_purge_cuts_a_prefix_and_the_rest_still_verifies() -> None:
    log, store, clock = _filled(4)
    clock.now = T0 + timedelta(days=365, minutes=2)  # rows at minutes 0 and 1 are past the retention
    assert log.purge() == 2
    assert [link.seq for link in store.links] == [3, 4]
    assert store.checkpoints == [ChainAnchor(2, store.links[0].prev_hash)]
    report = log.verify()
    assert report.intact
    assert report.rows == 2
    assert report.anchor.seq == 2
    assert log.purge() == 0
    log.record([_record(10)])
    assert log.verify().intact


def test_the_purge_refuses_a_short_retention() -> None:
    log, store, _ = _log(retention_days=30)
    log.record([_record(0)])
    with pytest.raises(ValueError, match="at least 365"):
        log.purge()
    assert len(store.links) == 1


def test_the_export_reads_every_row_in_chain_order_page_by_page() -> None:
    log, _, _ = _filled(7)
    assert [r.seq for r in log.export(None, page=3)] == [1, 2, 3, 4, 5, 6, 7]
    assert [r.seq for r in log.export(T0 + timedelta(minutes=5), page=3)] == [6, 7]
    assert [r.seq for r in log.export(None, after_seq=4, page=2)] == [5, 6, 7]


def test_a_siem_carrying_on_after_its_last_seq_gets_every_row_once_even_one_dated_earlier() -> None:
    log, _, _ = _filled(3)
    seen = list(log.export(None))
    log.record([_record(-60)])  # committed later, dated before everything read
    more = list(log.export(None, after_seq=seen[-1].seq or 0))
    assert [r.seq for r in more] == [4]
    assert more[0].record.at < seen[0].record.at
