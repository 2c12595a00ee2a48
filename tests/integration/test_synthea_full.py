"""The first real data a newcomer sends (issue 13): untrimmed Synthea Bundles and HL7's Bundle examples, full of
types refracture does not use (Encounter, Claim, Practitioner …), are accepted; those entries are acknowledged and
skipped, references to them break nothing, and a strict site can refuse them with words that say why."""

from __future__ import annotations

import copy
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.adapters.metrics import REGISTRY
from service.composition.parts import Parts
from service.fhir.jsonio import dumps
from service.fhir.resource_types import INPUT_TYPES
from service.fhir.validation import validate_resource
from service.platform.config import Settings
from tests.support.databases import query_one, table_counts
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.paths import ARTIFACTS, FIXTURES
from tests.support.processes import WorkerProcess
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings, worker_env
from tests.support.tokens import AUTH
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
FULL = {path.name.split("_")[0]: path for path in sorted((FIXTURES / "synthea-full").glob("*.json"))}
OTHER = FIXTURES / "hl7-r4-other"


def load(path: Path) -> Any:
    return json.loads(path.read_bytes(), parse_float=Decimal)


def kept(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] in INPUT_TYPES]


def unused_counts(bundle: dict[str, Any]) -> Counter[str]:
    return Counter(
        e["resource"]["resourceType"] for e in bundle["entry"] if e["resource"]["resourceType"] not in INPUT_TYPES
    )


def patient_id(bundle: dict[str, Any]) -> str:
    return next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    return {**out, "meta": meta} if meta else out


def resolved(node: Any, targets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: (targets.get(v, v) if k == "reference" and isinstance(v, str) else resolved(v, targets))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [resolved(v, targets) for v in node]
    return node


def issues_of(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    issues: list[dict[str, Any]] = outcome["issue"]
    for issue in issues:
        # Every issue speaks: the same plain words in diagnostics and details.text.
        assert issue["diagnostics"].strip(), issue
        assert issue["details"]["text"] == issue["diagnostics"]
    return issues


def check_skipped_entries(bundle: dict[str, Any], answer: dict[str, Any]) -> None:
    """Skipped entries answer 200 with an information outcome; the first also carries the count by type."""
    counts = unused_counts(bundle)
    first = True
    for request, response in zip(bundle["entry"], answer["entry"], strict=True):
        resource_type = request["resource"]["resourceType"]
        if resource_type in INPUT_TYPES:
            continue
        assert response["response"]["status"] == "200 OK"
        assert "location" not in response["response"]
        issues = issues_of(response["response"]["outcome"])
        assert {i["severity"] for i in issues} == {"information"}
        assert f"not stored: refracture does not use {resource_type} resources" in issues[0]["diagnostics"]
        if first:
            summary = issues[1]["diagnostics"]
            assert summary.startswith(f"{sum(counts.values())} entries have a type refracture does not use")
            for name, n in counts.items():
                assert f"{n} {name}" in summary
            first = False
        else:
            assert len(issues) == 1
    assert not first or not counts


@pytest.mark.parametrize("name", sorted(FULL))
def test_an_untrimmed_synthea_transaction_is_accepted_and_its_patient_assessed(
    parts: Parts, client: TestClient, database_url: str, name: str
) -> None:
    bundle = load(FULL[name])
    response = client.post("/fhir", content=FULL[name].read_bytes(), headers=FHIR)
    assert response.status_code == 200, response.text[:2000]
    answer = json.loads(response.content, parse_float=Decimal)
    assert answer["type"] == "transaction-response"
    assert validate_resource(answer) == []
    assert len(answer["entry"]) == len(bundle["entry"])
    for request, entry in zip(bundle["entry"], answer["entry"], strict=True):
        if request["resource"]["resourceType"] in INPUT_TYPES:
            assert entry["response"]["status"] == "201 Created"
    check_skipped_entries(bundle, answer)

    # What refracture uses is stored (Observations, Procedures …), with every placeholder resolved — references to
    # skipped entries too, to the EHR's type and id — and nothing else is stored.
    stored = kept(bundle)
    assert query_one(database_url, "SELECT count(*) FROM resource") == len(stored)
    targets = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    for entry in stored:
        resource = entry["resource"]
        got = client.get(f"/fhir/{resource['resourceType']}/{resource['id']}")
        assert got.status_code == 200
        assert without_server_meta(json.loads(got.content, parse_float=Decimal)) == without_server_meta(
            resolved(resource, targets)
        )
    for resource_type in ("Observation", "Procedure"):
        assert query_one(database_url, "SELECT count(*) FROM resource WHERE resource_type = %s", resource_type) == sum(
            1 for e in stored if e["resource"]["resourceType"] == resource_type
        )

    # The patient's change is processed by the assessment path. No Synthea patient has a vertebral augmentation:
    # the model does not apply, so no assessment is stored, and the change is done.
    pid = patient_id(bundle)
    assert query_one(database_url, "SELECT done_seq < changed_seq FROM patient_change WHERE patient_id = %s", pid)
    assert parts.assessor.assess_patients([pid]).not_applicable == 1
    assert parts.changes.process([pid]) == 1
    assert query_one(database_url, "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s", pid)
    assert query_one(database_url, "SELECT count(*) FROM assessment") == 0
    assert query_one(database_url, "SELECT count(*) FROM alert") == 0


@pytest.mark.worker
def test_a_real_worker_processes_the_patient_of_the_largest_synthea_bundle(
    settings: Settings, database_url: str
) -> None:
    # 700 entries (Hallie Hoeger: osteoporosis, T-scores, alendronate, fractures) through the real doorbell and a
    # real Celery worker, as a newcomer's first POST goes.
    worker = WorkerProcess(worker_env(settings), ARTIFACTS / "logs" / "worker-synthea-full.log")
    worker.wait_ready()
    parts = build_parts(settings)
    try:
        with TestClient(headers=AUTH, app=api_app(parts)) as real:
            response = real.post("/fhir", content=FULL["Hallie"].read_bytes(), headers=FHIR)
            assert response.status_code == 200
        pid = patient_id(load(FULL["Hallie"]))
        assert wait_for(
            lambda: query_one(
                database_url, "SELECT done_seq >= changed_seq FROM patient_change WHERE patient_id = %s", pid
            ),
            timeout_s=60,
        )
        # No vertebral augmentation on record: outside the model, so no RiskAssessment and no alert.
        assert query_one(database_url, "SELECT count(*) FROM assessment") == 0
        assert (
            query_one(database_url, "SELECT count(*) FROM fact WHERE patient_id = %s AND kind = 'dxa-t-score'", pid)
            == 2
        )
    finally:
        parts.close()
        worker.stop()


def as_batch_of_updates(bundle: dict[str, Any]) -> dict[str, Any]:
    """The same data as an EHR sends it in a batch: PUT Type/id, and references by the EHR's type and id (a batch
    resolves no placeholders, FHIR R4 http.html)."""
    targets = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    entries = [
        {
            "fullUrl": f"https://ehr.example/fhir/{targets[e['fullUrl']]}",
            "resource": resolved(e["resource"], targets),
            "request": {"method": "PUT", "url": targets[e["fullUrl"]]},
        }
        for e in bundle["entry"]
    ]
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


@pytest.mark.parametrize("name", ["Bob965", "Hallie"])
def test_a_batch_of_the_same_data_is_accepted_alike(
    client: TestClient, database_url: str, parts: Parts, name: str
) -> None:
    bundle = as_batch_of_updates(load(FULL[name]))
    response = client.post("/fhir", content=dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text[:2000]
    answer = response.json()
    assert answer["type"] == "batch-response"
    assert validate_resource(answer) == []
    for request, entry in zip(bundle["entry"], answer["entry"], strict=True):
        if request["resource"]["resourceType"] in INPUT_TYPES:
            assert entry["response"]["status"] == "201 Created", entry
    check_skipped_entries(bundle, answer)
    assert query_one(database_url, "SELECT count(*) FROM resource") == len(kept(bundle))
    pid = patient_id(bundle)
    assert parts.changes.process([pid]) == 1


def test_in_a_batch_placeholders_still_resolve_nowhere_but_those_of_skipped_entries_break_nothing(
    client: TestClient, database_url: str
) -> None:
    # Synthea's transaction sent as a batch: the Observations name their Patient by a placeholder, which a batch
    # does not resolve (422 for those entries, as before); their placeholders of skipped Encounters are not the
    # reason.
    bundle = {**load(FULL["Bob965"]), "type": "batch"}
    answer = client.post("/fhir", content=dumps(bundle), headers=FHIR).json()
    assert answer["type"] == "batch-response"
    statuses = Counter(
        (req["resource"]["resourceType"], res["response"]["status"])
        for req, res in zip(bundle["entry"], answer["entry"], strict=True)
    )
    assert statuses[("Patient", "201 Created")] == 1
    assert statuses[("Observation", "422 Unprocessable Entity")] == 30
    assert statuses[("Encounter", "200 OK")] == 32
    for res in answer["entry"]:
        if res["response"]["status"].startswith("422"):
            issues = issues_of(res["response"]["outcome"])
            assert [i["expression"][0].rsplit(".", 2)[-2:] for i in issues] == [["subject", "reference"]]
    check_skipped_entries(bundle, answer)
    assert query_one(database_url, "SELECT count(*) FROM resource") == 1


def test_conditional_references_and_unknown_placeholders_of_skipped_entries_are_kept_as_received(
    client: TestClient,
) -> None:
    # The newer Synthea (Bob965) points at practitioners and organisations by search (Practitioner?identifier=…)
    # whose targets are in other Bundles; refracture stores none of them, so a kept entry keeps the reference.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient", "id": "cond-1"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                # An id-less skipped entry: references to it stay the placeholder they were.
                "fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000002",
                "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                # A conditional create of a skipped type: skipped like any other, not refused as conditional.
                "fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000003",
                "resource": {"resourceType": "Practitioner", "id": "pr-1"},
                "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": "identifier=x|1"},
            },
            {
                "fullUrl": "urn:uuid:0a000000-0000-4000-8000-000000000004",
                "resource": {
                    "resourceType": "Observation",
                    "id": "cond-o1",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:0a000000-0000-4000-8000-000000000001"},
                    "encounter": {"reference": "urn:uuid:0a000000-0000-4000-8000-000000000002"},
                    "performer": [
                        {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999999"},
                        {"reference": "urn:uuid:0a000000-0000-4000-8000-000000000003"},
                    ],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", content=dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == [
        "201 Created",
        "200 OK",
        "200 OK",
        "201 Created",
    ]
    stored = client.get("/fhir/Observation/cond-o1").json()
    assert stored["subject"] == {"reference": "Patient/cond-1"}
    assert stored["encounter"] == {"reference": "urn:uuid:0a000000-0000-4000-8000-000000000002"}
    assert stored["performer"] == [
        {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999999"},
        {"reference": "Practitioner/pr-1"},
    ]


@pytest.fixture
def strict(settings: Settings) -> Any:
    """A site that refuses types refracture does not use (REFRACTURE_UNKNOWN_RESOURCE_TYPES=error)."""
    strict_settings = settings.model_copy(update={"unknown_resource_types": "error"})
    built = build_parts(strict_settings, queue=RecordingQueue())
    with TestClient(headers=AUTH, app=api_app(built), raise_server_exceptions=False) as strict_client:
        yield strict_client
    built.close()


def test_a_strict_site_refuses_the_transaction_and_says_why(strict: TestClient, database_url: str) -> None:
    bundle = load(FULL["Stanford"])
    before = table_counts(database_url)
    response = strict.post("/fhir", content=FULL["Stanford"].read_bytes(), headers=FHIR)
    assert response.status_code == 422
    issues = issues_of(response.json())
    counts = unused_counts(bundle)
    summary = issues[0]
    assert summary["code"] == "not-supported"
    assert summary["diagnostics"].startswith(f"{sum(counts.values())} entries have a type refracture does not take")
    assert "REFRACTURE_UNKNOWN_RESOURCE_TYPES=error" in summary["diagnostics"]
    for name, n in counts.items():
        assert f"{n} {name}" in summary["diagnostics"]
    second = bundle["entry"][1]["resource"]["resourceType"]
    assert f"refracture does not take {second} resources" in issues[1]["diagnostics"]
    assert issues[1]["expression"] == ["Bundle.entry[1].resource.resourceType"]
    assert table_counts(database_url) == before


def test_a_strict_site_refuses_each_such_entry_of_a_batch(strict: TestClient, database_url: str) -> None:
    bundle = as_batch_of_updates(load(FULL["Bob965"]))
    answer = strict.post("/fhir", content=dumps(bundle), headers=FHIR).json()
    for request, entry in zip(bundle["entry"], answer["entry"], strict=True):
        resource_type = request["resource"]["resourceType"]
        if resource_type in INPUT_TYPES:
            assert entry["response"]["status"] == "201 Created"
        else:
            assert entry["response"]["status"] == "422 Unprocessable Entity"
            (issue,) = issues_of(entry["response"]["outcome"])
            assert f"refracture does not take {resource_type} resources" in issue["diagnostics"]
    assert query_one(database_url, "SELECT count(*) FROM resource") == len(kept(bundle))


def test_hl7_examples_of_other_types_in_a_batch_are_skipped(client: TestClient, database_url: str) -> None:
    others = [load(p) for p in sorted(OTHER.glob("*.json")) if not p.name.startswith("Bundle-")]
    ours = [load(FIXTURES / "hl7-r4" / name) for name in ("Patient-pat2.json", "Observation-bmd.json")]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in others + ours
        ],
    }
    skipped = {"resource_type": "other", "outcome": "skipped"}
    before = REGISTRY.get_sample_value("refracture_ingested_resources_total", skipped) or 0
    answer = client.post("/fhir", content=dumps(bundle), headers=FHIR).json()
    assert [e["response"]["status"] for e in answer["entry"]] == ["200 OK"] * len(others) + ["201 Created"] * 2
    check_skipped_entries(bundle, answer)
    assert query_one(database_url, "SELECT count(*) FROM resource") == 2
    after = REGISTRY.get_sample_value("refracture_ingested_resources_total", skipped)
    assert after == before + len(others)


def test_hl7_transaction_example_as_a_batch_answers_every_entry_in_words(client: TestClient, database_url: str) -> None:
    # HL7's transaction example exercises what refracture does not support: conditional create and update, DELETE,
    # an operation, a search. As a transaction it is refused whole; as a batch each entry gets its own answer.
    example = load(OTHER / "Bundle-bundle-transaction.json")
    refused = client.post("/fhir", content=dumps(example), headers=FHIR)
    assert refused.status_code in (400, 405, 422)
    issues_of(refused.json())
    batch = {**copy.deepcopy(example), "type": "batch"}
    answer = client.post("/fhir", content=dumps(batch), headers=FHIR).json()
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "201 Created",  # POST Patient
        "422 Unprocessable Entity",  # conditional create
        "201 Created",  # PUT Patient/123
        "422 Unprocessable Entity",  # conditional update
        "412 Precondition Failed",  # If-Match W/"2" of a resource never stored
        "405 Method Not Allowed",  # DELETE
        "405 Method Not Allowed",  # conditional DELETE
        "400 Bad Request",  # POST ValueSet/$lookup with Parameters
        "422 Unprocessable Entity",  # search
        "404 Not Found",  # GET of a resource never stored
    ]
    for entry in answer["entry"]:
        if "outcome" in entry["response"]:
            issues_of(entry["response"]["outcome"])
    assert query_one(database_url, "SELECT count(*) FROM resource") == 2


@pytest.mark.parametrize(
    "name", ["Bundle-bundle-example.json", "Bundle-bundle-references.json", "Bundle-bundle-response.json"]
)
def test_hl7_bundles_of_other_kinds_are_refused_in_words(client: TestClient, name: str) -> None:
    response = client.post("/fhir", content=(OTHER / name).read_bytes(), headers=FHIR)
    assert response.status_code == 422
    (issue,) = issues_of(response.json())
    assert "Bundle.type must be transaction or batch" in issue["diagnostics"]


def test_the_setting_is_read_from_the_environment(services: Any, database_url: str) -> None:
    assert make_settings(services, database_url).unknown_resource_types == "skip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFRACTURE_UNKNOWN_RESOURCE_TYPES", "error")
        assert Settings().unknown_resource_types == "error"
        patch.setenv("REFRACTURE_UNKNOWN_RESOURCE_TYPES", "ignore")
        with pytest.raises(ValueError, match="unknown_resource_types"):
            Settings()


def test_skipped_entries_need_no_scope(services: Any, database_url: str) -> None:
    # An interface engine allowed to write only Patients and Observations sends Bob965 as Synthea wrote it.
    narrow = {"sub": "engine", "client_id": "engine", "scope": "system/Patient.write system/Observation.write"}
    settings = make_settings(services, database_url, auth_dev_tokens={"narrow": narrow})
    built = build_parts(settings, queue=RecordingQueue())
    try:
        with TestClient(app=api_app(built), raise_server_exceptions=False) as engine:
            headers = {**FHIR, "Authorization": "Bearer narrow"}
            response = engine.post("/fhir", content=FULL["Bob965"].read_bytes(), headers=headers)
            assert response.status_code == 200, response.text[:1000]
            # A type it may not write that refracture does use is still refused, whole.
            condition = {
                "resourceType": "Condition",
                "id": "c1",
                "subject": {"reference": "Patient/3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b"},
            }
            entry = {"resource": condition, "request": {"method": "PUT", "url": "Condition/c1"}}
            refused = engine.post(
                "/fhir", content=dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}), headers=headers
            )
            assert refused.status_code == 403
            issues_of(refused.json())
    finally:
        built.close()
