"""The audit chain with its head moved once per statement (migration 0023, issue 15 item 6): many-row appends from
many connections, several appends in one transaction and a savepoint rolled back between them still make one
chain without gaps that `refracture audit verify` accepts, with the head on its last row."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from service.adapters.postgres.audit import append_audit
from service.domain.audit_record import AuditRecord
from service.platform.config import Settings
from tests.support.parts import build_parts
from tests.support.queue import RecordingQueue

pytestmark = pytest.mark.integration

RECORD = AuditRecord(at=datetime.now(UTC), actor="tester", action="search", what="GET /api/worklist", outcome=200)


def _page(tag: str, n: int = 50) -> list[AuditRecord]:
    """What a worklist page appends: one row per patient on it."""
    return [replace(RECORD, patient_id=f"{tag}-{i}", roles=("care-coordinator",), detail=f"ü {i}") for i in range(n)]


def _check(settings: Settings, rows: int) -> None:
    url = settings.database_url.get_secret_value()
    with psycopg.connect(url) as conn:
        seqs = [seq for (seq,) in conn.execute("SELECT seq FROM audit_event ORDER BY seq")]
        head = conn.execute("SELECT seq, hash FROM audit_chain_head").fetchone()
        last = conn.execute("SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1").fetchone()
    assert seqs == list(range(1, rows + 1))
    assert head == last
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        assert [str(p) for p in parts.audit.verify().problems] == []
    finally:
        parts.close()


def test_many_row_appends_from_many_connections_make_one_chain(settings: Settings) -> None:
    def append(worker: int) -> None:
        with psycopg.connect(settings.database_url.get_secret_value()) as conn:
            for i in range(5):
                with conn.transaction():
                    append_audit(conn, _page(f"w{worker}-{i}"))
                # An ingest write's single row between the pages.
                with conn.transaction():
                    append_audit(conn, [replace(RECORD, actor=f"w{worker}", action="update")])

    threads = [threading.Thread(target=append, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _check(settings, 6 * 5 * 51)


def test_appends_in_one_transaction_with_a_savepoint_rolled_back(settings: Settings) -> None:
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        with conn.transaction():
            append_audit(conn, _page("first", 3))
            with conn.transaction():  # psycopg.Rollback: this block is rolled back, quietly
                append_audit(conn, _page("undone", 4))
                raise psycopg.Rollback()
            append_audit(conn, _page("second", 2))
            append_audit(conn, _page("third", 1))
        with conn.transaction():
            append_audit(conn, _page("later", 5))
        # A whole transaction rolled back takes its rows and the head's moves with it.
        with conn.transaction():  # psycopg.Rollback: this block is rolled back, quietly
            append_audit(conn, _page("gone", 7))
            raise psycopg.Rollback()
        patients = [p for (p,) in conn.execute("SELECT patient_id FROM audit_event ORDER BY seq")]
    assert [p.split("-")[0] for p in patients] == ["first"] * 3 + ["second"] * 2 + ["third"] + ["later"] * 5
    _check(settings, 11)
