"""The alert's Task (issue 18): valid R4, what docs/sources/contract.md says, the routing table, the sync-back rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.fhir.task import (
    TASK_SYSTEM,
    TaskInput,
    build_task,
    load_routing,
    parse_routing,
    route_owner,
    task_id_of,
    task_status,
)
from service.fhir.validation import validate_resource
from service.usecases.task_sync import task_actor

FIXTURES = Path(__file__).parent.parent / "fixtures"
ALERT_ID = "0b1e4c55-8d1f-5f39-9d7a-6c2f0e8b9a10"
ACTIVITY: dict[str, Any] = {
    "id": f"alert-{ALERT_ID}",
    "detail": {
        "kind": "MedicationRequest",
        "productCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "993452",
                    "display": "1 ML denosumab 60 MG/ML Prefilled Syringe",
                }
            ],
            "text": "Give the denosumab 60 mg dose now, or start zoledronic acid; check CTX",
        },
        "code": {"text": "Give the denosumab 60 mg dose now, or start zoledronic acid; check CTX"},
        "status": "not-started",
        "scheduledPeriod": {"start": "2026-04-05", "end": "2026-04-05"},
        "description": "Give the denosumab 60 mg dose now, or start zoledronic acid; check CTX by 2026-04-05.",
    },
}


def task(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "alert_id": ALERT_ID,
        "alert_code": "denosumab-overdue",
        "priority": "urgent",
        "patient_id": "p1",
        "activity": ACTIVITY,
        "plan_ref": "CarePlan/6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11",
        "medication_request": "MedicationRequest/mr1",
        "owner": {"reference": "CareTeam/fls-north", "display": "Fracture liaison, North"},
        "authored_on": "2026-06-01T08:00:00+00:00",
        "last_modified": "2026-06-02T09:00:00+00:00",
        **changes,
    }
    return build_task(TaskInput(**values))


def test_the_task_is_what_the_contract_says() -> None:
    resource = task()
    assert validate_resource(resource) == []
    assert resource["identifier"] == [{"system": TASK_SYSTEM, "value": task_id_of(ALERT_ID)}]
    assert resource["id"] == task_id_of(ALERT_ID) != ALERT_ID  # opaque, stable, never patient data
    assert (resource["status"], resource["intent"], resource["priority"]) == ("requested", "order", "urgent")
    assert resource["for"] == {"reference": "Patient/p1"}
    assert resource["focus"] == {"reference": "CarePlan/6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11"}
    assert resource["basedOn"] == [
        {"reference": "CarePlan/6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11"},
        {"reference": "MedicationRequest/mr1"},
    ]
    assert resource["restriction"] == {"period": {"end": "2026-04-05"}}
    assert resource["code"]["coding"][0]["code"] == "993452"
    assert resource["description"].startswith("Give the denosumab 60 mg dose now")
    assert resource["owner"]["reference"] == "CareTeam/fls-north"
    assert resource["requester"] == {"display": "refracture"}
    assert (resource["authoredOn"], resource["lastModified"]) == (
        "2026-06-01T08:00:00+00:00",
        "2026-06-02T09:00:00+00:00",
    )


@pytest.mark.parametrize(
    ("activity_status", "expected"),
    [
        ("not-started", "requested"),
        ("in-progress", "in-progress"),
        ("scheduled", "in-progress"),
        ("on-hold", "on-hold"),
        ("completed", "completed"),
        ("stopped", "cancelled"),
        ("cancelled", "cancelled"),
    ],
)
def test_every_status_is_valid(activity_status: str, expected: str) -> None:
    detail = {**ACTIVITY["detail"], "status": activity_status, "statusReason": {"text": "superseded"}}
    resource = task(activity={**ACTIVITY, "detail": detail}, priority="routine", owner=None, medication_request=None)
    assert task_status(activity_status) == expected
    assert resource["status"] == expected
    assert resource["priority"] == "routine"
    assert validate_resource(resource) == []
    assert ("statusReason" in resource) == (expected in ("completed", "cancelled"))


def test_a_status_the_ehr_set_is_kept() -> None:
    detail = {**ACTIVITY["detail"], "status": "cancelled", "statusReason": {"text": "dismissed by the care team"}}
    resource = task(activity={**ACTIVITY, "detail": detail}, ehr_status="completed")
    assert resource["status"] == "completed"
    assert "statusReason" not in resource


def test_it_uses_what_hl7s_task_examples_use() -> None:
    examples = [json.loads(p.read_text()) for p in sorted((FIXTURES / "hl7-r4-outputs").glob("Task-*.json"))]
    assert len(examples) == 12
    for example in examples:
        assert validate_resource(example) == [], example["id"]  # our validator takes HL7's own Tasks
    used = set().union(*(set(e) for e in examples))
    # reasonCode and lastModified are plain R4 Task elements; the examples leave them out.
    assert set(task()) <= used | {"reasonCode"}
    # The same shapes as the examples: intent order, requester a reference, restriction.period.end a date(time).
    assert any(e.get("intent") == "order" for e in examples)
    assert any("end" in e.get("restriction", {}).get("period", {}) for e in examples)


ROUTES = {
    "routes": [
        {"alert": "*", "site": "*", "owner": {"reference": "Organization/hospital"}},
        {"alert": "*", "site": "north", "owner": {"reference": "CareTeam/fls-north"}},
        {"alert": "denosumab-overdue", "owner": {"reference": "PractitionerRole/osteo-nurse"}},
        {"alert": "denosumab-overdue", "site": "north", "owner": {"reference": "Practitioner/dr-n", "display": "N"}},
    ]
}


def test_the_most_specific_route_wins() -> None:
    routes = parse_routing(ROUTES)
    assert route_owner(routes, "denosumab-overdue", "north") == {"reference": "Practitioner/dr-n", "display": "N"}
    assert route_owner(routes, "denosumab-overdue", "south") == {"reference": "PractitionerRole/osteo-nurse"}
    assert route_owner(routes, "treatment-gap", "north") == {"reference": "CareTeam/fls-north"}
    assert route_owner(routes, "treatment-gap", None) == {"reference": "Organization/hospital"}
    assert route_owner([], "treatment-gap", "north") is None


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"routes": {}},
        {"routes": [{"owner": {"reference": "Patient/p1"}}]},
        {"routes": [{"owner": {"display": "no reference"}}]},
        {"routes": [{"owner": {"reference": "CareTeam/a/b"}}]},
    ],
)
def test_a_bad_routing_table_is_refused(document: Any) -> None:
    with pytest.raises(ValueError, match=r"routing|owner"):
        parse_routing(document)


def test_the_routing_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(ROUTES))
    assert len(load_routing(path)) == 4
    path.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        load_routing(path)


def test_who_acted_at_the_ehr() -> None:
    note_by = {"note": [{"text": "given", "authorReference": {"reference": "Practitioner/dr-a"}}]}
    assert task_actor({**note_by, "owner": {"reference": "Practitioner/dr-b"}}) == "ehr:Practitioner/dr-a"
    assert task_actor({"note": [{"text": "x", "authorString": "Nurse C"}]}) == "ehr:Nurse C"
    assert task_actor({"owner": {"reference": "PractitionerRole/r1"}}) == "ehr:PractitionerRole/r1"
    assert task_actor({"owner": {"reference": "CareTeam/fls"}}) == "ehr"  # a team is not a person
    assert task_actor({}) == "ehr"
