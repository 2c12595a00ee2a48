"""The CarePlan: valid R4, shaped as the contract says, never dropping an activity silently."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from service.domain.alert_types import AlertType
from service.domain.care_plan import Action, AlertView, AssessmentView, plan_activities
from service.fhir.care_plan import build_care_plan, previous_activities
from service.fhir.validation import validate_resource
from tests.conftest import FIXTURES

OVERDUE = AlertView(
    "a1",
    AlertType.DENOSUMAB_OVERDUE,
    "open",
    date(2026, 1, 1),
    date(2026, 2, 1),
    ("MedicationAdministration/m1",),
    "Denosumab 60 mg: last dose 2025-07-02.",
)
GAP_RESOLVED = AlertView(
    "a2",
    AlertType.TREATMENT_GAP,
    "resolved",
    date(2025, 9, 1),
    date(2025, 9, 2),
    ("Condition/ovcf", "Procedure/pkp"),
    "gap",
)
DXA_DISMISSED = AlertView(
    "a3", AlertType.BMD_ASSESSMENT_GAP, "dismissed", date(2025, 8, 1), date(2025, 8, 2), ("Condition/ovcf",), "dxa"
)
HIGH = AssessmentView(
    "ra-1", "high", {"dxa-t-score": -3.4, "sarcopenia": True, "sglt2-inhibitor": True}, ("vertebral-hu",)
)


def plan(activities: Any, assessment: str | None = "ra-1") -> dict[str, Any]:
    return build_care_plan(
        "6b0b1f42-0c1e-5bbd-8a69-0d7c5f6b1a11", "p1", activities, assessment, ["Condition/ovcf"], date(2025, 5, 1)
    )


def by_id(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["id"]: a["detail"] for a in resource.get("activity", [])}


def test_the_contract_shape_and_validity() -> None:
    resource = plan(plan_activities([OVERDUE, GAP_RESOLVED, DXA_DISMISSED], HIGH))
    assert validate_resource(resource) == []
    assert (resource["status"], resource["intent"]) == ("active", "plan")
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["identifier"] == [{"system": "https://refracture.dev/fhir/sid/care-plan", "value": resource["id"]}]
    assert resource["supportingInfo"] == [{"reference": "RiskAssessment/ra-1"}]
    assert resource["addresses"] == [{"reference": "Condition/ovcf"}]
    details = by_id(resource)
    overdue = details["alert-a1"]
    assert overdue["reasonCode"][0]["coding"][0] == {
        "system": "https://refracture.dev/fhir/CodeSystem/alert-type",
        "code": "denosumab-overdue",
        "display": "Denosumab dose overdue",
    }
    assert overdue["productCodeableConcept"]["coding"][0]["code"] == "993452"
    assert overdue["kind"] == "MedicationRequest"
    assert overdue["status"] == "not-started"
    assert overdue["scheduledPeriod"] == {"start": "2026-01-01", "end": "2026-01-01"}
    assert "reasonReference" not in overdue  # a MedicationAdministration cannot be a reason in R4
    assert details["alert-a2"]["status"] == "completed"  # resolved by evidence
    assert details["alert-a3"]["status"] == "cancelled"  # dismissed by a person
    assert details["alert-a2"]["reasonReference"] == [{"reference": "Condition/ovcf"}]


def test_risk_driven_recommendations_and_measures() -> None:
    keys = {a.key for a in plan_activities([], HIGH)}
    assert keys == {
        Action.ANABOLIC_THERAPY.value,
        Action.EXERCISE.value,
        Action.FALL_PREVENTION.value,
        Action.REVIEW_SGLT2.value,
        Action.FOLLOW_UP_IMAGING.value,
        Action.MEASURE_HU.value,
    }
    moderate = AssessmentView("ra-2", "moderate", {}, ("dxa-t-score", "vertebral-hu"))
    assert {a.key for a in plan_activities([], moderate)} == {Action.MEASURE_DXA.value, Action.MEASURE_HU.value}
    # No "measure DXA" next to an open DXA alert: one ask, not two.
    open_dxa = AlertView("a4", AlertType.BMD_ASSESSMENT_GAP, "open", date(2026, 1, 1), date(2026, 1, 1), (), "x")
    assert Action.MEASURE_DXA.value not in {a.key for a in plan_activities([open_dxa], moderate)}


def test_an_activity_no_longer_asked_for_is_closed_once_not_dropped() -> None:
    before = plan(plan_activities([], AssessmentView("ra-2", "high", {}, ("dxa-t-score",))))
    after_dxa = plan_activities(
        [], AssessmentView("ra-3", "moderate", {"dxa-t-score": -2.0}, ()), previous_activities(before)
    )
    statuses = {a.key: a.status for a in after_dxa}
    assert statuses[Action.MEASURE_DXA.value] == "completed"
    assert statuses[Action.FALL_PREVENTION.value] == "cancelled"
    later = plan_activities(
        [], AssessmentView("ra-4", "moderate", {"dxa-t-score": -2.0}, ()), previous_activities(plan(after_dxa))
    )
    assert later == []


def test_it_uses_what_hl7s_care_plan_examples_use() -> None:
    examples = [json.loads(p.read_text()) for p in sorted((FIXTURES / "hl7-r4-outputs").glob("CarePlan-*.json"))]
    used = set().union(*(set(e) for e in examples))
    detail_used = {k for e in examples for a in e.get("activity", []) for k in a.get("detail", {})}
    resource = plan(plan_activities([OVERDUE, GAP_RESOLVED], HIGH))
    # identifier and supportingInfo are what the contract adds; title is plain R4 that the examples leave out.
    assert set(resource) <= used | {"identifier", "supportingInfo", "title"}
    for detail in by_id(resource).values():
        assert set(detail) <= detail_used | {"reasonCode", "reasonReference", "productCodeableConcept"}
