"""The audit trail nobody can wipe (issue 16, finding 3): a hash chain that `refracture audit verify` recomputes, a
purge only through the audit role's function with a minimum retention, and a runtime role that cannot edit, delete,
truncate or untrigger the trail, proven by connecting as it."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from service.devtools.local_services import LocalServices
from service.domain.audit_record import AuditRecord
from service.entrypoints.cli import main
from service.fhir.audit_event import AUDIT_CHAIN_EXTENSION
from service.fhir.validation import validate_resource
from service.platform.config import Settings, get_settings
from service.usecases.audit import SYSTEM_ACTOR
from tests.support.databases import SESSION
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import t_score
from tests.support.settings import command_env, make_settings
from tests.support.tokens import AUTH

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
ADMIN = {"Authorization": "Bearer test-admin"}
COORDINATOR = {"Authorization": "Bearer test-coordinator"}
NOW = datetime.now(UTC)
RECORD = AuditRecord(at=NOW, actor="tester", action="read", what="GET /test", outcome=200, roles=("a", "b"))


def execute(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def tamper(url: str, *statements: str) -> None:
    """What someone who owns the schema could do: switch the trigger off, change the trail, switch it on."""
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


def verify(settings: Settings) -> list[str]:
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        return [str(p) for p in parts.audit.verify().problems]
    finally:
        parts.close()


@pytest.fixture
def filled(settings: Settings) -> Settings:
    """Ten rows in the trail."""
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        parts.audit.record([replace(RECORD, patient_id=f"p{i}", detail=f"ü {i}") for i in range(10)])
    finally:
        parts.close()
    return settings


def test_each_row_links_to_the_one_before(filled: Settings) -> None:
    chain = execute(filled.database_url.get_secret_value(), "SELECT seq, prev_hash, hash FROM audit_event ORDER BY seq")
    assert [seq for seq, _, _ in chain] == list(range(1, 11))
    assert chain[0][1] == bytes(32)
    assert all(chain[i][1] == chain[i - 1][2] for i in range(1, 10))
    assert execute(filled.database_url.get_secret_value(), "SELECT seq, hash FROM audit_chain_head") == [
        (10, chain[-1][2])
    ]
    assert verify(filled) == []


def test_verify_catches_an_edited_row_and_says_where(filled: Settings) -> None:
    row_id = execute(filled.database_url.get_secret_value(), "SELECT id FROM audit_event WHERE seq = 4")[0][0]
    tamper(filled.database_url.get_secret_value(), "UPDATE audit_event SET actor = 'someone else' WHERE seq = 4")
    assert verify(filled) == [f"seq 4 (row id {row_id}): edited: its content does not match its hash"]


def test_verify_catches_an_edited_row_whose_hash_was_recomputed(filled: Settings) -> None:
    tamper(
        filled.database_url.get_secret_value(),
        "UPDATE audit_event SET patient_id = 'p99' WHERE seq = 4",
        "UPDATE audit_event SET hash = sha256(audit_event_bytes(audit_event)) WHERE seq = 4",
    )
    [problem] = verify(filled)
    assert problem.startswith("seq 5 ")
    assert "does not follow the row before it" in problem


def test_verify_catches_deleted_rows(filled: Settings) -> None:
    tamper(filled.database_url.get_secret_value(), "DELETE FROM audit_event WHERE seq IN (3, 6, 7)")
    problems = verify(filled)
    assert [p.split(" (")[0] for p in problems] == ["seq 4", "seq 8"]
    assert "rows seq 3 are missing" in problems[0]
    assert "rows seq 6..7 are missing" in problems[1]


def test_verify_catches_the_newest_rows_deleted(filled: Settings) -> None:
    tamper(filled.database_url.get_secret_value(), "DELETE FROM audit_event WHERE seq >= 9")
    assert verify(filled) == ["seq 10: rows seq 9..10 are missing (the newest deleted)"]


def test_the_command_exits_1_on_a_broken_chain(
    filled: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with command_env(monkeypatch, DATABASE_URL=filled.database_url.get_secret_value(), ENVIRONMENT="test"):
        assert main(["audit", "verify"]) == 0
        assert "audit trail intact: 10 rows" in capsys.readouterr().out
        tamper(filled.database_url.get_secret_value(), "UPDATE audit_event SET outcome = 403 WHERE seq = 2")
        assert main(["audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN at seq 2 (row id" in out
    assert "NOT intact: 1 problem(s)" in out


def test_appends_from_many_connections_make_one_chain(settings: Settings) -> None:
    def append(worker: int) -> None:
        with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
            for i in range(25):
                conn.execute(
                    "INSERT INTO audit_event (at, actor, action, what, outcome) VALUES (now(), %s, 'read', 'x', 200)",
                    (f"w{worker}-{i}",),
                )

    threads = [threading.Thread(target=append, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = [
        seq for (seq,) in execute(settings.database_url.get_secret_value(), "SELECT seq FROM audit_event ORDER BY seq")
    ]
    assert seqs == list(range(1, 201))
    assert verify(settings) == []


def test_a_rolled_back_append_leaves_no_gap(settings: Settings) -> None:
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        conn.execute("INSERT INTO audit_event (at, actor, action, what, outcome) VALUES (now(), 'a', 'read', 'x', 200)")
        conn.rollback()
    execute(
        settings.database_url.get_secret_value(),
        "INSERT INTO audit_event (at, actor, action, what, outcome) VALUES (now(), 'b', 'r', 'x', 1)",
    )
    assert execute(settings.database_url.get_secret_value(), "SELECT seq, actor FROM audit_event") == [(1, "b")]
    assert verify(settings) == []


def test_the_purge_cuts_a_prefix_and_the_rest_still_verifies(settings: Settings) -> None:
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        old = [replace(RECORD, at=NOW - timedelta(days=3000 - i), what=f"GET /old/{i}") for i in range(5)]
        kept = replace(RECORD, at=NOW - timedelta(days=4000), what="GET /old but after a recent row")
        parts.audit.record([*old, RECORD, kept])
        assert parts.audit.purge() == 5
        report = parts.audit.verify()
    finally:
        parts.close()
    assert report.intact, report.problems
    assert (report.anchor.seq, report.rows, report.head.seq) == (5, 2, 7)
    # A row older than retention but after a recent one waits for the prefix to reach it: the chain stays whole.
    assert [
        w for (w,) in execute(settings.database_url.get_secret_value(), "SELECT what FROM audit_event ORDER BY seq")
    ] == [
        "GET /test",
        "GET /old but after a recent row",
    ]
    assert execute(
        settings.database_url.get_secret_value(), "SELECT seq, purged, retention_days FROM audit_checkpoint"
    ) == [(5, 5, 6 * 365)]


def test_the_purge_refuses_a_short_retention_and_the_session_trick_is_gone(settings: Settings) -> None:
    url = settings.database_url.get_secret_value()
    execute(
        url,
        "INSERT INTO audit_event (at, actor, action, what, outcome) "
        "VALUES (now() - interval '10 days', 'a', 'r', 'x', 1)",
    )
    for days in (-1, 0, 364):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 365 days"):
            execute(url, "SELECT purge_audit_events(%s)", days)
    # 0006 let any session delete by setting these two; now they open nothing.
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('refracture.audit_purge', 'on', true)")
        conn.execute("SELECT set_config('refracture.audit_retention_days', '-1', true)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_event")
    assert execute(url, "SELECT count(*) FROM audit_event") == [(1,)]


@pytest.fixture
def runtime_url(services: LocalServices, settings: Settings) -> Iterator[str]:
    """A login role that is a member of refracture_runtime, as the deployment's API and workers use."""
    name = f"refracture_rt_{SESSION}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE refracture_runtime").format(sql.Identifier(name)))
    params = conninfo_to_dict(settings.database_url.get_secret_value())
    params["user"] = name
    yield make_conninfo(**params)  # type: ignore[arg-type]
    with psycopg.connect(
        make_conninfo(settings.database_url.get_secret_value(), dbname="postgres"), autocommit=True
    ) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_the_runtime_role_cannot_edit_delete_truncate_or_untrigger_the_trail(
    runtime_url: str, settings: Settings
) -> None:
    execute(
        runtime_url, "INSERT INTO audit_event (at, actor, action, what, outcome) VALUES (now(), 'a', 'read', 'x', 200)"
    )
    assert execute(runtime_url, "SELECT count(*) FROM audit_event") == [(1,)]
    for statement in (
        "UPDATE audit_event SET actor = 'someone else'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
        "DROP TRIGGER audit_event_append_only ON audit_event",
        "ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only",
        "DROP TRIGGER audit_event_chain ON audit_event",
        "UPDATE audit_chain_head SET seq = 0",
        "INSERT INTO audit_checkpoint VALUES (1, '\\x00', 1, now(), 1)",
        "DELETE FROM audit_checkpoint",
        "CREATE OR REPLACE FUNCTION purge_audit_events(retention_days integer) RETURNS bigint "
        "LANGUAGE sql AS 'SELECT 0::bigint'",
        "SELECT refracture_apply_grants()",
        "CREATE TABLE audit_event_copy (id int)",
        "CREATE FUNCTION audit_min_retention_days() RETURNS integer LANGUAGE sql AS 'SELECT 0'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            execute(runtime_url, statement)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        execute(runtime_url, "SELECT purge_audit_events(-1)")
    assert execute(settings.database_url.get_secret_value(), "SELECT count(*) FROM audit_event") == [(1,)]


def test_the_runtime_role_purges_with_retention_through_the_function(runtime_url: str, settings: Settings) -> None:
    execute(
        runtime_url,
        "INSERT INTO audit_event (at, actor, action, what, outcome) VALUES "
        "(now() - interval '800 days', 'a', 'read', 'old', 200), (now(), 'b', 'read', 'new', 200)",
    )
    assert execute(runtime_url, "SELECT purge_audit_events(700)") == [(1,)]
    assert execute(runtime_url, "SELECT what FROM audit_event") == [("new",)]
    assert verify(settings.model_copy(update={"database_url": SecretStr(runtime_url)})) == []


def test_the_service_runs_as_the_runtime_role(runtime_url: str, services: LocalServices) -> None:
    """Everything the API does (ingest, reads, the worklist, the audit export) works with the runtime grants."""
    parts = build_parts(make_settings(services, runtime_url), queue=RecordingQueue())
    observation = t_score("o1", day=None)
    try:
        with TestClient(api_app(parts), headers=AUTH, raise_server_exceptions=False) as client:
            assert client.put("/fhir/Observation/o1", content=json.dumps(observation), headers=FHIR).status_code == 201
            assert client.get("/fhir/Observation/o1").status_code == 200
            assert client.get("/api/worklist").status_code == 200
            assert client.get("/api/audit").status_code == 200
            assert parts.audit.verify().intact
    finally:
        parts.close()


def test_the_export_is_ndjson_audit_events_with_their_chain_place_and_is_audited(
    filled: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = build_parts(filled, queue=RecordingQueue())
    try:
        parts.audit.record([replace(RECORD, at=NOW - timedelta(days=2), what="GET /before")])
    finally:
        parts.close()
    monkeypatch.setenv("REFRACTURE_DATABASE_URL", filled.database_url.get_secret_value())
    monkeypatch.setenv("REFRACTURE_ENVIRONMENT", "test")
    get_settings.cache_clear()
    out = tmp_path / "audit.ndjson"
    since = (NOW - timedelta(days=1)).isoformat()
    try:
        assert main(["audit", "export", "--since", since, "--out", str(out)]) == 0
    finally:
        get_settings.cache_clear()
    lines = out.read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == 10  # the row from two days ago is before --since
    hashes = dict(
        execute(filled.database_url.get_secret_value(), "SELECT seq::text, encode(hash, 'hex') FROM audit_event")
    )
    for event in events:
        assert validate_resource(event) == [], event
        [chain] = [e for e in event["extension"] if e["url"] == AUDIT_CHAIN_EXTENSION]
        seq, digest = (part["valueString"] for part in chain["extension"])
        assert hashes[seq] == digest
    [(actor, action, what, detail)] = execute(
        filled.database_url.get_secret_value(),
        "SELECT actor, action, what, detail FROM audit_event ORDER BY seq DESC LIMIT 1",
    )
    assert (actor, action, what, detail) == (SYSTEM_ACTOR, "export", "refracture audit export", "10 AuditEvent(s)")
    assert "exported 10 AuditEvent(s)" in capsys.readouterr().err


def test_the_siem_export_endpoint_streams_ndjson_from_since_for_administrators(filled: Settings) -> None:
    parts = build_parts(filled, queue=RecordingQueue())
    try:
        parts.audit.record([replace(RECORD, at=NOW - timedelta(days=2), what="GET /before")])
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:
            since = (NOW - timedelta(days=1)).isoformat()
            refused = client.get("/api/audit/$export", params={"_since": since}, headers=COORDINATOR)
            answer = client.get("/api/audit/$export", params={"_since": since}, headers=ADMIN)
    finally:
        parts.close()
    assert refused.status_code == 403
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/fhir+ndjson")
    events = [json.loads(line) for line in answer.text.splitlines()]
    # Not the row of two days ago (seq 11); the refused call (12) and the export itself (13, written before its first
    # byte) are in.
    assert all(validate_resource(e) == [] for e in events)
    seqs = [int(e["extension"][0]["extension"][0]["valueString"]) for e in events]
    assert seqs == [*range(1, 11), 12, 13]
    exported = execute(
        filled.database_url.get_secret_value(), "SELECT actor, detail FROM audit_event WHERE action = 'export'"
    )
    assert ("admin.one", "audit $export") in exported


def test_migrate_uses_the_owners_url_when_there_is_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The runtime URL points nowhere: only the owner's URL can have migrated.
    with command_env(
        monkeypatch,
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing",
        MIGRATE_DATABASE_URL=settings.database_url.get_secret_value(),
        ENVIRONMENT="test",
    ):
        assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


_REWRITE_FROM_4 = """
DO $$
DECLARE
    r    audit_event;
    prev bytea;
BEGIN
    SELECT hash INTO prev FROM audit_event WHERE seq = 3;
    FOR r IN SELECT * FROM audit_event WHERE seq >= 4 ORDER BY seq LOOP
        IF r.seq = 4 THEN
            r.actor := 'someone else';
        END IF;
        r.prev_hash := prev;
        r.hash := sha256(audit_event_bytes(r));
        UPDATE audit_event SET actor = r.actor, prev_hash = r.prev_hash, hash = r.hash WHERE seq = r.seq;
        prev := r.hash;
    END LOOP;
    UPDATE audit_chain_head SET hash = prev;
END
$$
"""


def test_a_consistently_rewritten_chain_differs_from_a_hash_kept_outside(
    filled: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with command_env(monkeypatch, DATABASE_URL=filled.database_url.get_secret_value(), ENVIRONMENT="test"):
        assert main(["audit", "verify"]) == 0
        head = capsys.readouterr().out.split("head ")[1].split()[0]  # SEQ:HASH, as an operator would keep it
        assert main(["audit", "verify", "--expect", head]) == 0
        tamper(filled.database_url.get_secret_value(), _REWRITE_FROM_4)
        assert main(["audit", "verify"]) == 0  # whoever owns the schema can rewrite the chain consistently…
        capsys.readouterr()
        assert main(["audit", "verify", "--expect", head]) == 1  # …but not match a hash kept elsewhere
    assert "BROKEN at seq 10 (row id" in capsys.readouterr().out


def test_a_siem_carrying_on_after_its_last_seq_gets_every_row_once_even_one_dated_earlier(filled: Settings) -> None:
    parts = build_parts(filled, queue=RecordingQueue())
    try:
        first = list(parts.audit.export(None))
        # Committed after the first pull but dated before its newest row: a `_since` pull would miss it.
        parts.audit.record([replace(RECORD, at=NOW - timedelta(hours=1), what="GET /late")])
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:
            answer = client.get("/api/audit/$export", params={"after_seq": first[-1].seq}, headers=ADMIN)
    finally:
        parts.close()
    assert [r.seq for r in first] == list(range(1, 11))
    events = [json.loads(line) for line in answer.text.splitlines()]
    assert [e["outcomeDesc"] for e in events][:1] == ["200 GET /late"]
    assert int(events[0]["extension"][0]["extension"][0]["valueString"]) == 11
