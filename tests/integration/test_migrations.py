"""Migrations: they build the schema, run twice without harm, and refuse an edited past."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from service.adapters.postgres.migrate import available_migrations, create_database_if_missing, migrate
from service.devtools.local_services import LocalServices
from tests.support.databases import SESSION, drop_database
from tests.support.settings import command_env

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database(services: LocalServices) -> Iterator[str]:
    name = f"refracture_m_{SESSION}_{uuid.uuid4().hex[:6]}"
    url = psycopg.conninfo.make_conninfo(services.database_url, dbname=name)
    assert create_database_if_missing(url) is True
    assert create_database_if_missing(url) is False
    yield url
    drop_database(services, name)


def test_migrations_build_the_schema_once(empty_database: str) -> None:
    versions = [m.version for m in available_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert migrate(conn) == versions
        assert migrate(conn) == []
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
    assert {
        "resource",
        "resource_history",
        "fact",
        "unrecognised_code",
        "patient_change",
        "schema_migration",
        "assessment",
    } <= tables


def test_an_edited_migration_is_refused(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrate(conn)
        conn.execute("UPDATE schema_migration SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(RuntimeError, match="changed after it was applied"):
            migrate(conn)


def test_the_command_migrates(
    empty_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.entrypoints.cli import main

    with command_env(monkeypatch, DATABASE_URL=empty_database):
        assert main(["migrate"]) == 0
        assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    versions = [m.version for m in available_migrations()]
    assert f"migrations applied: {versions}" in out
    assert "up to date" in out


def test_the_worklist_migration_fills_summaries_for_data_already_stored(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.adapters.postgres import migrate as module

    everything = available_migrations()
    monkeypatch.setattr(module, "available_migrations", lambda: [m for m in everything if m.version < 5])
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrate(conn)
        patient = {
            "resourceType": "Patient",
            "id": "old-1",
            "name": [{"family": "Testperson", "given": ["Ada"]}],
            "identifier": [{"system": "urn:oid:1.2.3", "value": "M-77"}],
            "gender": "female",
            "birthDate": "1944-01-02",
        }
        conn.execute(
            "INSERT INTO resource (resource_type, id, version_id, last_updated_at, content_hash, patient_id, body) "
            "VALUES ('Patient', 'old-1', 1, now(), '\\x00', 'old-1', %s)",
            (psycopg.types.json.Jsonb(patient),),
        )
        conn.execute(
            "INSERT INTO alert (id, patient_id, code, status, priority, due_date, episode, evidence, detail, "
            "opened_at, updated_at) VALUES (gen_random_uuid(), 'old-2', 'treatment-gap', 'open', 'urgent', "
            "'2026-01-01', 'e', '[]', 'd', now(), now())"
        )
        monkeypatch.setattr(module, "available_migrations", lambda: everything)
        assert 5 in migrate(conn)
        rows = conn.execute(
            "SELECT patient_id, name, mrn, birth_date::text, sex, search FROM patient_summary ORDER BY patient_id"
        ).fetchall()
    assert rows == [
        ("old-1", "Testperson, Ada", "M-77", "1944-01-02", "female", "testperson, ada m-77"),
        ("old-2", None, None, None, None, ""),  # an alert's patient: on the worklist under its id
    ]
