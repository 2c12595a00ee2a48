"""The audit trail: a row for every access to patient data, append-only, exported as valid AuditEvents."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.fhir.validation import validate_resource
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import t_score
from tests.support.settings import make_settings
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
ALL = {"Authorization": "Bearer test-all"}
ADMIN = {"Authorization": "Bearer test-admin"}
COORDINATOR = {"Authorization": "Bearer test-coordinator"}
OBSERVATION = t_score("o1", day=None)


@pytest.fixture
def app(services: LocalServices, worklist_url: str) -> Iterator[tuple[Parts, TestClient]]:
    parts = build_parts(make_settings(services, worklist_url), queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client


def rows(url: str, where: str = "TRUE", *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(f"SELECT * FROM audit_event WHERE {where} ORDER BY id", params).fetchall()


def since(url: str) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute("SELECT coalesce(max(id), 0) FROM audit_event").fetchone()
    return int(found[0]) if found else 0


def test_a_write_and_a_read_are_audited_with_who_what_whom_when_and_from_where(
    app: tuple[Parts, TestClient], worklist_url: str
) -> None:
    _, client = app
    mark = since(worklist_url)
    put = client.put(
        "/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **ALL, "X-Request-Id": "req-42"}
    )
    assert put.status_code == 201
    read = client.get("/fhir/Observation/o1", headers=COORDINATOR)
    assert read.status_code == 200
    written, seen = rows(worklist_url, "id > %s", mark)
    assert written["actor"] == "tester"
    assert written["action"] == "update"
    assert written["what"] == "PUT /fhir/{resource_type}/{resource_id}"
    assert (written["resource_type"], written["resource_id"], written["patient_id"]) == ("Observation", "o1", "p1")
    assert written["outcome"] == 201
    assert written["request_id"] == "req-42"
    assert written["source_ip"] == "testclient"
    assert set(written["roles"]) == {"integration-client", "care-coordinator", "administrator"}
    assert written["auth_source"] == "dev-token"
    assert (seen["actor"], seen["action"], seen["patient_id"], seen["outcome"]) == (
        "coordinator.one",
        "read",
        "p1",
        200,
    )


def test_refused_requests_are_audited_too(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    mark = since(worklist_url)
    assert client.get("/fhir/Observation/o1").status_code == 401
    assert (
        client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **COORDINATOR}).status_code
        == 403
    )
    # A known caller refused: a row. Nobody at all: a count per address and minute (tests/integration/test_throttle.py).
    [denied] = rows(worklist_url, "id > %s", mark)
    assert (denied["actor"], denied["outcome"], denied["action"]) == ("coordinator.one", 403, "update")
    assert rows(worklist_url, "id > %s AND actor = 'anonymous'", mark) == []
    counted = query_one(
        worklist_url,
        "SELECT sum(requests) FROM refused_request_count WHERE what = 'GET /fhir/{resource_type}/{resource_id}' "
        "AND outcome = 401",
    )
    assert counted >= 1


def test_a_worklist_page_is_one_row_per_patient_shown(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    mark = since(worklist_url)
    page = client.get("/api/worklist", params={"limit": 10}, headers=COORDINATOR).json()
    shown = {item["patient_id"] for item in page["items"]}
    audited = rows(worklist_url, "id > %s", mark)
    assert {r["patient_id"] for r in audited} == shown
    assert {r["action"] for r in audited} == {"search"}


def test_an_alert_action_is_audited_with_its_patient(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    item = client.get("/api/worklist", params={"limit": 1}, headers=COORDINATOR).json()["items"][0]
    mark = since(worklist_url)
    acted = client.post(f"/api/alerts/{item['alert_id']}/actions", json={"action": "acknowledge"}, headers=COORDINATOR)
    assert acted.status_code == 200
    [row] = rows(worklist_url, "id > %s", mark)
    assert (row["action"], row["patient_id"], row["actor"]) == ("alert-action", item["patient_id"], "coordinator.one")
    assert row["detail"] == f"alert {item['alert_id']}: acknowledge"


def test_the_csv_export_records_every_patient_it_held(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    mark = since(worklist_url)
    exported = client.get("/api/worklist.csv", params={"priority": "urgent"}, headers=COORDINATOR)
    assert exported.status_code == 200
    patients = {r["patient_id"] for r in csv.DictReader(io.StringIO(exported.text))}
    audited = rows(worklist_url, "id > %s AND action = 'export'", mark)
    assert audited[0]["patient_id"] is None  # the export's start, before the first byte
    assert {r["patient_id"] for r in audited[1:]} == patients


def test_health_checks_are_not_audited(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    mark = since(worklist_url)
    client.get("/healthz")
    client.get("/fhir/metadata")
    assert rows(worklist_url, "id > %s", mark) == []


def test_no_audit_no_data(app: tuple[Parts, TestClient]) -> None:
    parts, client = app
    client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **ALL})

    def broken(records: Any) -> None:
        raise RuntimeError("audit table unavailable")

    parts.audit.record = broken  # type: ignore[method-assign]
    answer = client.get("/fhir/Observation/o1", headers=ALL)
    assert answer.status_code == 503
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert "38267-1" not in answer.text  # the resource did not leave


def test_the_trail_is_append_only(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    client.get("/fhir/Observation/o1", headers=ALL)
    for statement in (
        "UPDATE audit_event SET actor = 'someone else'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    ):
        with psycopg.connect(worklist_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)  # type: ignore[arg-type]


def test_the_trail_exports_as_valid_audit_events_page_by_page(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    _, client = app
    client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **ALL})
    client.get("/api/worklist", params={"limit": 5}, headers=COORDINATOR)
    assert client.get("/api/audit", headers=COORDINATOR).status_code == 403
    first = client.get("/api/audit", params={"_count": 3}, headers=ADMIN)
    assert first.status_code == 200
    bundle = first.json()
    assert bundle["type"] == "searchset"
    assert len(bundle["entry"]) == 3
    events = [e["resource"] for e in bundle["entry"]]
    for event in events:
        assert event["resourceType"] == "AuditEvent"
        assert validate_resource(event) == [], event
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    second = client.get(next_url, headers=ADMIN).json()
    assert int(second["entry"][0]["resource"]["id"]) > int(events[-1]["id"])
    one_patient = client.get("/api/audit", params={"patient": "p1"}, headers=ADMIN).json()
    assert one_patient["entry"]
    for entry in one_patient["entry"]:
        patients = [e["what"].get("reference") for e in entry["resource"].get("entity", [])]
        assert "Patient/p1" in patients
    write = next(e for e in one_patient["entry"] if e["resource"]["subtype"][0]["code"] == "update")["resource"]
    assert write["action"] == "U"
    assert write["outcome"] == "0"
    assert write["agent"][0]["who"]["identifier"]["value"] == "tester"


def _bundle(kind: str, *entries: dict[str, Any]) -> str:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)})


def test_bundle_reads_are_attributed_to_the_patient_of_the_stored_resource(
    app: tuple[Parts, TestClient], worklist_url: str
) -> None:
    _, client = app
    client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **ALL})
    mark = since(worklist_url)
    for kind in ("batch", "transaction"):
        read = {"request": {"method": "GET", "url": "Observation/o1"}}
        answer = client.post("/fhir", content=_bundle(kind, read), headers={**FHIR, **ALL})
        assert answer.status_code == 200, answer.text
    audited = rows(worklist_url, "id > %s", mark)
    assert [(r["action"], r["patient_id"]) for r in audited] == [("batch", "p1"), ("transaction", "p1")]


def test_a_bundle_read_carrying_a_decoy_resource_is_refused_and_not_audited_as_the_decoy(
    app: tuple[Parts, TestClient], worklist_url: str
) -> None:
    _, client = app
    client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers={**FHIR, **ALL})
    decoy = {**OBSERVATION, "subject": {"reference": "Patient/someone-else"}}
    read = {"resource": decoy, "request": {"method": "GET", "url": "Observation/o1"}}
    mark = since(worklist_url)
    batch = client.post("/fhir", content=_bundle("batch", read), headers={**FHIR, **ALL})
    assert batch.status_code == 200
    [entry] = batch.json()["entry"]
    assert entry["response"]["status"].startswith("400")
    assert "GET entries carry no resource" in json.dumps(entry["response"]["outcome"])
    transaction = client.post("/fhir", content=_bundle("transaction", read), headers={**FHIR, **ALL})
    assert transaction.status_code == 400
    assert "someone-else" not in {r["patient_id"] for r in rows(worklist_url, "id > %s", mark)}


def test_an_interrupted_csv_export_has_recorded_the_patients_of_every_chunk_it_sent(
    app: tuple[Parts, TestClient], worklist_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.entrypoints.api import worklist_routes

    parts, client = app
    monkeypatch.setattr(worklist_routes, "CSV_CHUNK_BYTES", 0)  # a chunk per row
    export = parts.worklist.export
    sent: list[str] = []

    def failing_after_three(*args: Any, **kwargs: Any) -> Any:
        for number, row in enumerate(export(*args, **kwargs)):
            if number == 3:
                raise ConnectionError("the database went away mid-export")
            sent.append(row.patient_id)
            yield row

    monkeypatch.setattr(parts.worklist, "export", failing_after_three)
    mark = since(worklist_url)
    with contextlib.suppress(ConnectionError):  # the stream broke off after its first chunks
        client.get("/api/worklist.csv", headers=COORDINATOR)
    audited = rows(worklist_url, "id > %s AND action = 'export'", mark)
    assert audited[0]["patient_id"] is None  # the start, before the first byte
    assert len(sent) == 3
    assert {r["patient_id"] for r in audited[1:]} == set(sent)


def test_a_write_commits_with_its_audit_row_or_not_at_all(app: tuple[Parts, TestClient], worklist_url: str) -> None:
    """The audit rows of a FHIR write are inserted in the write's own transaction (issue 15: one commit per write)."""
    _, client = app
    body = json.dumps({**OBSERVATION, "id": "o9"})
    with psycopg.connect(worklist_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
        )
    refused = client.put("/fhir/Observation/o9", content=body, headers={**FHIR, **ALL})
    assert refused.status_code >= 500
    with psycopg.connect(worklist_url) as conn:
        assert conn.execute("SELECT count(*) FROM resource WHERE id = 'o9'").fetchone() == (0,)  # no unaudited write
        conn.execute("DROP TRIGGER refuse_audit ON audit_event")
        conn.commit()
    mark = since(worklist_url)
    assert client.put("/fhir/Observation/o9", content=body, headers={**FHIR, **ALL}).status_code == 201
    [written] = rows(worklist_url, "id > %s", mark)
    assert (written["resource_id"], written["patient_id"], written["outcome"]) == ("o9", "p1", 201)
    assert client.put("/fhir/Observation/o9", content=body, headers={**FHIR, **ALL}).status_code == 200  # unchanged
    assert [r["outcome"] for r in rows(worklist_url, "id > %s", mark)] == [201, 200]
