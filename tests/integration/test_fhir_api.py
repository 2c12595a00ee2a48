"""The FHIR endpoints: create, update, read, versions, If-Match, entered-in-error, metadata."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.usecases.task_names import TASK_PATIENTS_CHANGED
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.queue import RecordingQueue

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON


def patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1948-03-02", **extra}


def tscore(oid: str = "o1", value: float = -2.9, pid: str = "p1", status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2025-02-20",
        "valueQuantity": {
            "value": value,
            "unit": "{T-score}",
            "system": "http://unitsofmeasure.org",
            "code": "{T-score}",
        },
    }


def put(client: TestClient, resource: dict[str, Any], **headers: str) -> Any:
    return client.put(
        f"/fhir/{resource['resourceType']}/{resource['id']}", content=json.dumps(resource), headers={**FHIR, **headers}
    )


def test_put_creates_then_updates_with_versions(client: TestClient, database_url: str) -> None:
    first = put(client, patient())
    assert first.status_code == 201
    assert first.headers["content-type"].startswith("application/fhir+json")
    assert first.headers["etag"] == 'W/"1"'
    assert first.headers["location"].endswith("/fhir/Patient/p1/_history/1")
    assert first.json()["meta"]["versionId"] == "1"

    second = put(client, patient(gender="male"))
    assert second.status_code == 200
    assert second.json()["meta"]["versionId"] == "2"

    read = client.get("/fhir/Patient/p1")
    assert read.status_code == 200
    assert read.json()["gender"] == "male"
    assert read.headers["etag"] == 'W/"2"'
    assert query_one(database_url, "SELECT count(*) FROM resource_history WHERE id = 'p1'") == 1


def test_identical_content_makes_no_new_version(client: TestClient, database_url: str) -> None:
    put(client, patient())
    again = put(client, patient())
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"
    # Our own meta in the body does not count as a change either.
    with_meta = patient(meta={"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"})
    assert put(client, with_meta).json()["meta"]["versionId"] == "1"
    assert query_one(database_url, "SELECT count(*) FROM resource_history") == 0


def test_post_keeps_the_ehr_id_and_assigns_one_when_absent(client: TestClient) -> None:
    kept = client.post("/fhir/Patient", content=json.dumps(patient("ehr-42")), headers=FHIR)
    assert kept.status_code == 201
    assert kept.json()["id"] == "ehr-42"
    body = patient()
    del body["id"]
    assigned = client.post("/fhir/Patient", content=json.dumps(body), headers=FHIR)
    assert assigned.status_code == 201
    new_id = assigned.json()["id"]
    assert client.get(f"/fhir/Patient/{new_id}").status_code == 200


def test_prefer_minimal_returns_no_body(client: TestClient) -> None:
    response = put(client, patient(), Prefer="return=minimal")
    assert response.status_code == 201
    assert response.content == b""


def test_if_match(client: TestClient) -> None:
    put(client, patient())
    stale = put(client, patient(gender="male"), **{"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    fresh = put(client, patient(gender="male"), **{"If-Match": 'W/"1"'})
    assert fresh.status_code == 200


def test_facts_are_written_with_the_resource(client: TestClient, database_url: str) -> None:
    put(client, patient())
    put(client, tscore())
    assert query_one(database_url, "SELECT value_num FROM fact WHERE kind = 'dxa-t-score'") == pytest.approx(-2.9)
    put(client, tscore(value=-3.1))
    assert query_one(database_url, "SELECT count(*) FROM fact WHERE kind = 'dxa-t-score'") == 1
    assert query_one(database_url, "SELECT value_num FROM fact WHERE kind = 'dxa-t-score'") == pytest.approx(-3.1)


def test_entered_in_error_is_kept_but_marked_and_drops_its_facts(client: TestClient, database_url: str) -> None:
    put(client, tscore())
    response = put(client, tscore(status="entered-in-error"))
    assert response.status_code == 200
    assert query_one(database_url, "SELECT entered_in_error FROM resource WHERE id = 'o1'") is True
    assert query_one(database_url, "SELECT count(*) FROM fact") == 0
    assert client.get("/fhir/Observation/o1").json()["status"] == "entered-in-error"


def test_the_patient_change_is_recorded_and_the_doorbell_rung(
    client: TestClient, database_url: str, queue: RecordingQueue
) -> None:
    put(client, tscore())
    assert query_one(database_url, "SELECT changed_seq > done_seq FROM patient_change WHERE patient_id = 'p1'")
    assert (TASK_PATIENTS_CHANGED, [["p1"]]) in queue.sent
    # The doorbell marked the row, so the periodic relay does not ring again at once.
    assert query_one(database_url, "SELECT published_at IS NOT NULL FROM patient_change") is True


def test_decimals_keep_their_digits(client: TestClient) -> None:
    raw = json.dumps(tscore()).replace("-2.9", "-2.90")
    put_response = client.put("/fhir/Observation/o1", content=raw, headers=FHIR)
    assert put_response.status_code == 201
    assert b"-2.90" in client.get("/fhir/Observation/o1").content


def test_metadata_is_a_capability_statement(client: TestClient) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Patient", "Observation", "MedicationDispense", "CodeSystem"} <= types
    security = body["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    for listed in (".cu", ".rs", ".read", ".write", "patient/", "?category=", "system/metrics.read"):
        assert listed in security["description"], listed


def test_code_systems_are_served(client: TestClient) -> None:
    measure = client.get("/fhir/CodeSystem/measure").json()
    assert measure["url"] == "https://refracture.dev/fhir/CodeSystem/measure"
    assert {"vertebral-hu", "cement-volume-ratio"} <= {c["code"] for c in measure["concept"]}
    search = client.get("/fhir/CodeSystem", params={"url": "https://refracture.dev/fhir/CodeSystem/alert-type"})
    assert search.json()["total"] == 1
