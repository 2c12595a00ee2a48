"""No input produces a 500, and the CapabilityStatement promises only what the server does."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.devtools.synth import cohort
from tests.support.http import FHIR_JSON

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)

BASE_OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2025-01-01",
    "valueQuantity": {"value": -2.5, "unit": "{T-score}"},
}
KEYS = [
    "status",
    "code",
    "subject",
    "effectiveDateTime",
    "valueQuantity",
    "bodySite",
    "component",
    "id",
    "meta",
    "resourceType",
    "partOf",
    "extension",
    "contained",
    "_status",
]


SUBJECT = {"subject": {"reference": "Patient/p1"}}
DRUG = {"medicationCodeableConcept": {"text": "denosumab 60 mg"}}
# The least each input type needs to be valid.
MINIMAL: dict[str, dict[str, Any]] = {
    "Observation": {"status": "final", "code": {"text": "x"}},
    "Procedure": {"status": "completed", **SUBJECT},
    "Condition": SUBJECT,
    "MedicationAdministration": {"status": "completed", "effectiveDateTime": "2025-01-01", **DRUG, **SUBJECT},
    "MedicationStatement": {"status": "active", **DRUG, **SUBJECT},
    "MedicationRequest": {"status": "active", "intent": "order", **DRUG, **SUBJECT},
    "MedicationDispense": {"status": "completed", **DRUG},
}


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values)
def test_any_json_body(client: TestClient, body: Any) -> None:
    check(client.post("/fhir", content=json.dumps(body), headers=FHIR))
    check(client.put("/fhir/Observation/o1", content=json.dumps(body), headers=FHIR))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=json_values, in_bundle=st.booleans())
def test_one_element_replaced_by_anything(client: TestClient, key: str, value: Any, in_bundle: bool) -> None:
    resource = {**BASE_OBSERVATION, key: value}
    if in_bundle:
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:1", "resource": resource, "request": {"method": "PUT", "url": "Observation/o1"}}
            ],
        }
        check(client.post("/fhir", content=json.dumps(bundle), headers=FHIR))
    else:
        check(client.put("/fhir/Observation/o1", content=json.dumps(resource), headers=FHIR))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes(client: TestClient, raw: bytes) -> None:
    check(client.post("/fhir", content=raw, headers=FHIR))


def test_every_interaction_in_the_capability_statement_is_served(client: TestClient, parts: Any) -> None:
    synthetic = cohort(1, seed=2, today=date(2026, 11, 1))[0]
    pid = synthetic["entry"][0]["resource"]["id"]
    client.post("/fhir", content=json.dumps(synthetic), headers=FHIR)
    parts.changes.process([pid])
    assessment_id = client.get("/fhir/RiskAssessment", params={"subject": f"Patient/{pid}"}).json()["entry"][0][
        "resource"
    ]["id"]
    plan_id = client.get("/fhir/CarePlan", params={"subject": f"Patient/{pid}"}).json()["entry"][0]["resource"]["id"]
    task_id = client.get("/fhir/Task", params={"subject": f"Patient/{pid}"}).json()["entry"][0]["resource"]["id"]
    read_target = {"CodeSystem": "measure", "RiskAssessment": assessment_id, "CarePlan": plan_id, "Task": task_id}
    search = {
        "CodeSystem": {},
        "RiskAssessment": {"subject": f"Patient/{pid}"},
        "CarePlan": {"subject": f"Patient/{pid}"},
        "Task": {"subject": f"Patient/{pid}"},
    }
    # The quality measures (docs/measures.md): an evaluation keeps the report that is then read and searched.
    year = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}
    report = client.get("/fhir/Measure/fls-identified/$evaluate-measure", params=year).json()
    read_target |= {"Measure": "fls-identified", "MeasureReport": report["id"]}
    search |= {"Measure": {}, "MeasureReport": {"measure": "fls-identified"}}
    statement = client.get("/fhir/metadata").json()
    for resource in statement["rest"][0]["resource"]:
        kind = resource["type"]
        codes = {i["code"] for i in resource["interaction"]}
        body = {"resourceType": kind, "id": "cap-1", **MINIMAL.get(kind, {})}
        if "create" in codes:
            assert client.post(f"/fhir/{kind}", content=json.dumps(body), headers=FHIR).status_code == 201
        if "update" in codes:
            assert client.put(f"/fhir/{kind}/cap-1", content=json.dumps(body), headers=FHIR).status_code == 200
        if "read" in codes:
            assert client.get(f"/fhir/{kind}/{read_target.get(kind, 'cap-1')}").status_code == 200
        if "search-type" in codes:
            assert client.get(f"/fhir/{kind}", params=search[kind]).json()["total"] >= 1
    assert {i["code"] for i in statement["rest"][0]["interaction"]} == {"transaction", "batch"}
