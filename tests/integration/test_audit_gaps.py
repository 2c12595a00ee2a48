"""Audit gaps closed (issue 16, finding 7): notification Bundles list their patients; what refracture reads from the
EHR by itself (feed fetches and polls), bulk imports and CLI dumps are on the trail under refracture's own name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.entrypoints.cli import main
from service.platform.config import Settings
from service.usecases.audit import SYSTEM_ACTOR
from tests.ehr_standin import RunningStandIn
from tests.integration.test_subscriptions import feed_app, notification, observation, patient, post, work
from tests.support.settings import command_env

pytestmark = pytest.mark.integration


@pytest.fixture
def app(services: LocalServices, database_url: str, ehr: RunningStandIn) -> Iterator[tuple[Parts, TestClient]]:
    with feed_app(services, database_url, ehr) as running:
        yield running


def audit_rows(url: str, where: str = "TRUE") -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"SELECT * FROM audit_event WHERE {where} ORDER BY seq").fetchall()  # type: ignore[arg-type]


def test_a_full_resource_notification_lists_its_patients(app: tuple[Parts, TestClient]) -> None:
    parts, client = app
    assert post(client, notification("handshake", 0, [])).status_code == 200
    body = notification(
        "event-notification",
        2,
        [(1, "Observation/o1"), (2, "Observation/o2")],
        (observation("o1"), observation("o2", "p2")),
    )
    assert post(client, body).status_code == 200
    rows = audit_rows(
        parts.core.settings.database_url.get_secret_value(), "action = 'notification' AND detail = 'event-notification'"
    )
    assert {r["patient_id"] for r in rows} == {"p1", "p2"}


def test_feed_fetches_and_polls_are_audited_under_refractures_name(
    app: tuple[Parts, TestClient], ehr: RunningStandIn
) -> None:
    parts, client = app
    assert post(client, notification("handshake", 0, [])).status_code == 200
    ehr.app.put(patient("p1"))
    ehr.app.put(observation("o1"))
    assert post(client, notification("event-notification", 1, [(1, "Observation/o1")])).status_code == 200
    work(parts)  # fetches o1, then the first periodic poll reads everything changed
    url = parts.core.settings.database_url.get_secret_value()
    fetched = audit_rows(url, "action = 'feed-fetch'")
    assert [(r["actor"], r["auth_source"], r["resource_type"], r["resource_id"], r["patient_id"]) for r in fetched] == [
        (SYSTEM_ACTOR, "system", "Observation", "o1", "p1")
    ]
    polled = {(r["resource_type"], r["patient_id"]) for r in audit_rows(url, "action = 'feed-poll'")}
    assert {("Patient", "p1"), ("Observation", "p1")} <= polled


def test_a_bulk_import_is_audited_per_patient(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [patient("p1"), observation("o1"), patient("p2"), observation("o2", "p2"), {"resourceType": "Patient"}]
    path = tmp_path / "population.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with command_env(
        monkeypatch,
        DATABASE_URL=settings.database_url.get_secret_value(),
        REDIS_URL=settings.redis_url,
        ENVIRONMENT="test",
    ):
        main(["import", str(path)])
    rows = audit_rows(settings.database_url.get_secret_value(), "action = 'import'")
    assert sorted(r["patient_id"] for r in rows) == ["p1", "p2"]
    assert {(r["actor"], r["what"]) for r in rows} == {(SYSTEM_ACTOR, "refracture import (files)")}


def test_the_writeback_status_dump_is_audited(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO writeback (patient_id, wanted_seq, status, attempts, next_attempt_at, last_status, "
            "last_error, updated_at) VALUES ('p7', 1, 'dead', 5, now(), 422, 'refused', now())"
        )
    with command_env(monkeypatch, DATABASE_URL=settings.database_url.get_secret_value(), ENVIRONMENT="test"):
        assert main(["writeback", "status"]) == 0
    [row] = audit_rows(settings.database_url.get_secret_value(), "what = 'refracture writeback status'")
    assert (row["actor"], row["action"], row["patient_id"]) == (SYSTEM_ACTOR, "export", "p7")
