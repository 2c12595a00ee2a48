"""Real FHIR written by others: HL7's R4 examples and Synthea bundles go in, come back unchanged, yield facts."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from service.fhir.jsonio import dumps
from service.fhir.validation import validate_resource
from tests.support.databases import query_one
from tests.support.http import FHIR_JSON
from tests.support.paths import FIXTURES

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
HL7 = sorted((FIXTURES / "hl7-r4").glob("*.json"))
# As Synthea writes them, Encounters, Claims and all (issue 13); their round trip is in test_synthea_full.py.
SYNTHEA = {path.name.split("_")[0]: path for path in sorted((FIXTURES / "synthea-full").glob("*.json"))}


def load(path: Path) -> Any:
    return json.loads(path.read_bytes(), parse_float=Decimal)


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    return {**out, "meta": meta} if meta else out


def read(client: TestClient, resource_type: str, resource_id: str) -> Any:
    response = client.get(f"/fhir/{resource_type}/{resource_id}")
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)


def test_every_hl7_example_of_the_input_types_round_trips_unchanged(client: TestClient) -> None:
    assert len(HL7) > 150
    for path in HL7:
        resource = load(path)
        response = client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}", content=path.read_bytes(), headers=FHIR
        )
        assert response.status_code == 201, (path.name, response.text)
        stored = read(client, resource["resourceType"], resource["id"])
        assert stored["meta"]["versionId"] == "1"
        assert without_server_meta(stored) == without_server_meta(resource), path.name


def test_hl7_examples_in_one_transaction(client: TestClient, database_url: str) -> None:
    entries = []
    for path in HL7:
        resource = load(path)
        entries.append(
            {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}
        )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = client.post("/fhir", content=dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(HL7)
    assert not validate_resource(body)
    assert query_one(database_url, "SELECT count(*) FROM resource") == len(HL7)
    # The bone-density example (LOINC 24701-5, femur BMD in g/cm2) becomes a fact for Patient/pat2.
    assert query_one(
        database_url, "SELECT value_num FROM fact WHERE kind = 'dxa-bmd' AND patient_id = 'pat2'"
    ) == pytest.approx(0.887)


def post_synthea(client: TestClient, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = SYNTHEA[name]
    response = client.post("/fhir", content=path.read_bytes(), headers=FHIR)
    assert response.status_code == 200, response.text
    return load(path), response.json()


def test_resending_a_synthea_bundle_changes_nothing(client: TestClient, database_url: str) -> None:
    post_synthea(client, "Stanford")
    facts = query_one(database_url, "SELECT count(*) FROM fact")
    _, again = post_synthea(client, "Stanford")
    assert {e["response"]["status"] for e in again["entry"]} == {"200 OK"}
    # Stored entries answer their unchanged version; skipped ones (no etag) were stored neither time.
    assert {e["response"].get("etag") for e in again["entry"]} == {'W/"1"', None}
    assert query_one(database_url, "SELECT count(*) FROM resource_history") == 0
    assert query_one(database_url, "SELECT count(*) FROM fact") == facts


def facts_of(database_url: str, patient_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT kind, value_num, value_text, unit, effective_date::text AS day, status, attrs FROM fact "
            "WHERE patient_id = %s ORDER BY effective_date, kind",
            (patient_id,),
        ).fetchall()


def patient_id(bundle: dict[str, Any]) -> str:
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def test_facts_of_the_synthea_osteoporosis_patients(client: TestClient, database_url: str) -> None:
    stanford, _ = post_synthea(client, "Stanford")
    facts = facts_of(database_url, patient_id(stanford))
    tscores = [(f["day"], f["value_num"]) for f in facts if f["kind"] == "dxa-t-score"]
    assert tscores == [("2012-05-09", pytest.approx(-3.77, abs=0.01))]
    meds = [f for f in facts if f["kind"] == "medication"]
    assert [(m["day"], m["attrs"]["drug"], m["attrs"]["event"], m["status"]) for m in meds] == [
        ("2012-05-09", "alendronate", "request", "active")
    ]
    assert ("2012-05-09", "osteoporosis") in {(f["day"], f["kind"]) for f in facts}
    assert {f["value_text"] for f in facts if f["kind"] == "sex"} == {"male"}

    hallie, _ = post_synthea(client, "Hallie")
    facts = facts_of(database_url, patient_id(hallie))
    assert [(f["day"], f["value_num"]) for f in facts if f["kind"] == "dxa-t-score"] == [
        ("2012-04-02", pytest.approx(-0.02, abs=0.01)),
        ("2016-10-09", pytest.approx(-3.31, abs=0.01)),
    ]
    fractures = {(f["day"], f["kind"]) for f in facts if "fracture" in f["kind"]}
    assert fractures == {
        ("2012-04-02", "non-vertebral-fracture"),
        ("2020-12-16", "non-vertebral-fracture"),
        ("2020-12-16", "osteoporotic-fracture"),
    }
    assert [f["attrs"]["drug"] for f in facts if f["kind"] == "medication"] == ["alendronate"]

    twyla, _ = post_synthea(client, "Twyla")
    kinds = {(f["day"], f["kind"]) for f in facts_of(database_url, patient_id(twyla))}
    assert {("2006-01-22", "osteoporosis"), ("2017-10-02", "osteoporotic-fracture")} <= kinds

    kathe, _ = post_synthea(client, "Kathe")
    kinds = {f["kind"] for f in facts_of(database_url, patient_id(kathe))}
    assert "non-vertebral-fracture" in kinds
    assert "osteoporosis" not in kinds
    assert "medication" not in kinds


def test_unrecognised_codes_are_counted_not_refused(client: TestClient) -> None:
    post_synthea(client, "Libbie")
    codes = client.get("/api/terminology/unrecognised").json()
    assert codes
    assert all(c["occurrences"] >= 1 for c in codes)
    assert any(c["resource_type"] == "Observation" and c["system"] == "http://loinc.org" for c in codes)
