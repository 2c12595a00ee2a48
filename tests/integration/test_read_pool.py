"""The worklist's read path (issue 15, item 6): its own read-only pool, the statement time-out answered as a clear
503, and the read replica's URL honoured while writes stay on the primary."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.support.clock import ManualClock
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.support.tokens import COORDINATOR
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration


@pytest.fixture
def app(services: LocalServices, worklist_url: str) -> Iterator[tuple[Parts, TestClient]]:
    settings = make_settings(services, worklist_url, read_statement_timeout_s=0.3, read_pool_max=2)
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(headers=COORDINATOR, app=api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client


def _show(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def test_the_read_pool_is_read_only_and_times_out(app: tuple[Parts, TestClient]) -> None:
    parts, _ = app
    with parts.read_pool.connection() as conn:
        assert _show(conn, "statement_timeout") == "300ms"
        assert _show(conn, "default_transaction_read_only") == "on"
    with parts.core.pool.connection() as conn:  # ingest's pool: no time-out, writes allowed
        assert _show(conn, "statement_timeout") == "0"
        assert _show(conn, "default_transaction_read_only") == "off"


def test_a_read_past_the_time_out_is_a_clear_503(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    assert client.get("/api/worklist").status_code == 200
    locked = threading.Event()
    release = threading.Event()

    def hold_the_alerts() -> None:
        # A migration or a long write holding the table: the worklist's query waits for the lock, past the time-out.
        with psycopg.connect(worklist_url) as conn, conn.transaction():
            conn.execute("LOCK TABLE alert IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_alerts)
    holder.start()
    try:
        assert locked.wait(10)
        for path in ("/api/worklist", "/api/worklist/counts"):
            response = client.get(path)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            body = response.json()
            assert body["resourceType"] == "OperationOutcome"
            assert body["issue"][0]["code"] == "timeout"
            assert "took too long" in body["issue"][0]["diagnostics"]
    finally:
        release.set()
        holder.join()
    # The pool recovers: the cancelled statement left no connection behind in a failed transaction.
    for _ in range(3):
        assert client.get("/api/worklist").status_code == 200


def test_worklist_reads_go_to_the_replica_and_writes_to_the_primary(
    services: LocalServices, worklist_url: str, database_url: str
) -> None:
    # The "replica" is the loaded worklist; the primary an empty database. Whatever the worklist shows comes from the
    # read URL, while a search (written, then read back at once) goes to the primary.
    settings = make_settings(services, database_url, read_database_url=worklist_url)
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    try:
        with TestClient(headers=COORDINATOR, app=api_app(parts), raise_server_exceptions=False) as c:
            items = c.get("/api/worklist", params={"limit": 5}).json()["items"]
            assert len(items) == 5
            assert sum(n["open"] for n in c.get("/api/worklist/counts").json()) > 0
            saved = c.post("/api/worklist/searches", json={"q": "zeta"})
            assert saved.status_code == 201, saved.text
    finally:
        parts.close()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM alert").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM worklist_search").fetchone() == (1,)
        audited = conn.execute("SELECT count(*) FROM audit_event WHERE what = 'GET /api/worklist'").fetchone()
        # The audit is written on the primary, never the replica.
        assert audited is not None
        assert audited[0] >= 1
    with psycopg.connect(worklist_url) as conn:
        assert conn.execute("SELECT count(*) FROM worklist_search").fetchone() == (0,)
