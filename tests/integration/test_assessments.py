"""Assessments: a real worker assesses a posted patient once; identical data adds nothing; rescore after a model
change; RiskAssessments served by id and by subject, newest first."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from service.devtools.synth import cohort
from service.fhir.validation import validate_resource
from service.platform.config import Settings
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.processes import WorkerProcess
from tests.support.settings import command_env
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
TODAY = date(2026, 11, 1)


def bundle(number: int = 1) -> dict[str, Any]:
    return cohort(number, seed=3, today=TODAY)[number - 1]


def patient_id(body: dict[str, Any]) -> str:
    return str(body["entry"][0]["resource"]["id"])


@pytest.mark.worker
def test_a_posted_patient_is_assessed_once_and_a_resend_adds_nothing(
    settings: Settings, database_url: str, worker: WorkerProcess
) -> None:
    body = bundle()
    pid = patient_id(body)
    parts = build_parts(settings)
    with TestClient(headers=AUTH, app=api_app(parts)) as client:
        assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
        assert wait_for(lambda: query_one(database_url, "SELECT count(*) FROM assessment") == 1)
        assert wait_for(
            lambda: query_one(
                database_url, "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s", pid
            )
        )
        search = client.get("/fhir/RiskAssessment", params={"subject": f"Patient/{pid}"}).json()
        assert search["type"] == "searchset"
        assert search["total"] == 1
        resource = search["entry"][0]["resource"]
        assert validate_resource(resource) == []
        assert client.get(f"/fhir/RiskAssessment/{resource['id']}").json() == resource

        assert client.post("/fhir", content=json.dumps(body), headers=FHIR).status_code == 200
        parts.relay.ring()  # even a doorbell rung again finds nothing new
        assert parts.changes.process([pid]) == 0
    assert query_one(database_url, "SELECT count(*) FROM assessment") == 1


def test_unchanged_inputs_are_not_assessed_again_and_changed_ones_are(
    parts: Any, client: TestClient, database_url: str
) -> None:
    body = bundle()
    pid = patient_id(body)
    client.post("/fhir", content=json.dumps(body), headers=FHIR)
    first = parts.assessor.assess_patients([pid])
    assert (first.assessed, first.unchanged) == (1, 0)
    assert parts.assessor.assess_patients([pid]).unchanged == 1
    sarcopenia = {
        "resourceType": "Observation",
        "id": f"{pid}-sarcopenia",
        "status": "final",
        "code": {"coding": [{"system": "https://refracture.dev/fhir/CodeSystem/measure", "code": "sarcopenia"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2026-01-05",
        "valueBoolean": True,
    }
    client.put(f"/fhir/Observation/{pid}-sarcopenia", content=json.dumps(sarcopenia), headers=FHIR)
    assert parts.assessor.assess_patients([pid]).assessed == 1
    search = client.get("/fhir/RiskAssessment", params={"patient": pid}).json()
    assert search["total"] == 2
    newest, older = (e["resource"] for e in search["entry"])
    assert newest["occurrenceDateTime"] >= older["occurrenceDateTime"]
    assert "Sarcopenia: yes" in newest["note"][0]["text"]
    assert newest["id"] != older["id"]


def test_a_patient_without_an_augmentation_is_not_assessed(parts: Any, client: TestClient) -> None:
    patient = {"resourceType": "Patient", "id": "no-op", "gender": "female", "birthDate": "1950-01-01"}
    client.put("/fhir/Patient/no-op", content=json.dumps(patient), headers=FHIR)
    outcome = parts.assessor.assess_patients(["no-op", "never-seen"])
    assert (outcome.assessed, outcome.not_applicable) == (0, 2)


def test_rescore_after_a_model_change(parts: Any, client: TestClient, database_url: str) -> None:
    bodies = cohort(12, seed=5, today=TODAY)
    for body in bodies:
        client.post("/fhir", content=json.dumps(body), headers=FHIR)
    first = parts.assessor.rescore(batch_size=5)
    assert first.assessed == 12
    assert parts.assessor.rescore(batch_size=5).unchanged == 12
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE assessment SET model_version = 'refracture-ovcf-2y/0.9.0+old'")
    again = parts.assessor.rescore(batch_size=5)
    assert again.assessed == 12
    assert query_one(database_url, "SELECT count(DISTINCT patient_id) FROM assessment") == 12
    only_two = parts.assessor.rescore([patient_id(bodies[0]), patient_id(bodies[1])])
    assert only_two.unchanged == 2


def test_the_command_rescores(
    settings: Settings, client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.entrypoints.cli import main

    client.post("/fhir", content=json.dumps(bundle()), headers=FHIR)
    with command_env(monkeypatch, DATABASE_URL=settings.database_url.get_secret_value()):
        assert main(["rescore"]) == 0
    assert "1 new assessments" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"subject": "Patient/../x"}, 400),
        ({"subject": "Patient/p", "code": "x"}, 400),
        ({"subject": "Patient/p"}, 200),
        ({"patient": "p", "_count": "0"}, 400),
    ],
)
def test_risk_assessment_search_parameters(client: TestClient, params: dict[str, str], status: int) -> None:
    response = client.get("/fhir/RiskAssessment", params=params)
    assert response.status_code == status
    assert response.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_unknown_risk_assessment_ids(client: TestClient) -> None:
    assert client.get("/fhir/RiskAssessment/not-a-uuid").status_code == 404
    assert client.get("/fhir/RiskAssessment/3f1b7c2e-6d1a-5b7e-9f00-1c2d3e4f5a6b").status_code == 404
