"""Every FHIR resource refracture emits is valid R4: checked with fhir.resources and our own checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.fhir.capability import capability_statement
from service.fhir.codesystems import CODE_SYSTEMS
from service.fhir.outcome import entry_response, error_entry, operation_outcome, response_bundle, skipped_entry
from service.fhir.validation import validate_resource
from service.platform.errors import Issue, Problem, RefractureError


def test_capability_statement() -> None:
    statement = capability_statement("https://refracture.example/fhir")
    assert validate_resource(statement) == []
    assert statement["fhirVersion"] == "4.0.1"


@pytest.mark.parametrize("cs_id", sorted(CODE_SYSTEMS))
def test_code_systems(cs_id: str) -> None:
    code_system = CODE_SYSTEMS[cs_id]
    assert validate_resource(code_system) == []
    assert code_system["count"] == len(code_system["concept"])
    assert len({c["code"] for c in code_system["concept"]}) == len(code_system["concept"])


def test_operation_outcomes() -> None:
    assert validate_resource(operation_outcome([Issue("invalid", "bad", "Patient.gender")])) == []
    assert validate_resource(operation_outcome([])) == []


def test_response_bundles() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    entries = [
        entry_response(201, "Patient", "p", 1, now),
        entry_response(200, "Patient", "p", 2, now, {"resourceType": "Patient", "id": "p"}),
        error_entry(RefractureError(Problem.INVALID, [Issue("value", "bad", "Bundle.entry[2].resource.active")])),
        skipped_entry([Issue("informational", "not stored", "Bundle.entry[3].resource.resourceType", "information")]),
    ]
    for kind in ("transaction", "batch"):
        assert validate_resource(response_bundle(kind, entries)) == []


def test_care_plans_with_every_action_and_activity_status() -> None:
    from datetime import date

    from service.domain.care_plan import Action, PlannedActivity
    from service.fhir.care_plan import build_care_plan

    statuses = ["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped", "cancelled"]
    activities = [
        PlannedActivity(
            key=f"{action.value}-{status}",
            action=action,
            status=status,
            due=date(2026, 1, 1),
            detail="x",
            status_reason="superseded by 'Denosumab stopped without follow-on'" if status != "completed" else None,
        )
        for action in Action
        for status in statuses
    ]
    plan = build_care_plan("6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11", "p1", activities, "ra-1", [], date(2025, 5, 1))
    assert validate_resource(plan) == []
    reasons = [a["detail"].get("statusReason") for a in plan["activity"]]
    assert {"text": "superseded by 'Denosumab stopped without follow-on'"} in reasons


def test_tasks_in_every_status_and_as_sent_in_a_transaction() -> None:
    from service.fhir.task import TaskInput, build_task
    from service.fhir.writeback import TaskWrite, WritePlan, transaction_bundle

    statuses = ["not-started", "scheduled", "in-progress", "on-hold", "completed", "stopped", "cancelled"]
    tasks = []
    for n, status in enumerate(statuses):
        detail = {
            "kind": "Task",
            "code": {"text": "Verify the date of the last denosumab injection"},
            "status": status,
            "statusReason": {"text": "superseded"},
            "scheduledPeriod": {"start": "2026-01-01", "end": "2026-01-01"},
            "description": "Verify the date of the last denosumab injection by 2026-01-01.",
        }
        task = build_task(
            TaskInput(
                f"8f6d2b1e-3c4a-5d6e-8f90-1a2b3c4d5e{n:02d}",
                "denosumab-dose-due",
                "routine",
                "p1",
                {"id": "alert-x", "detail": detail},
                "CarePlan/6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11",
                None,
                {"reference": "Organization/o1"},
                "2026-01-01T00:00:00+00:00",
                "2026-01-02T00:00:00+00:00",
            )
        )
        assert validate_resource(task) == []
        tasks.append(TaskWrite(f"a{n}", task["id"], 1, task, "3" if n else None))
    plan = WritePlan(
        patient_id="p1",
        care_plan={
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": "Patient/p1"},
        },
        plan_id="6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11",
        plan_version=2,
        tasks=tasks,
    )
    bundle = transaction_bundle(plan, None)
    assert validate_resource(bundle) == []
    sent = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    assert [e["resource"]["focus"] for e in sent] == [
        {"reference": "urn:uuid:6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11"}
    ] * 7
    assert "ifMatch" not in sent[0]["request"]
    assert {e["request"]["ifMatch"] for e in sent[1:]} == {'W/"3"'}
