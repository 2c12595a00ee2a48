"""The CarePlan: valid R4, shaped as the contract says, never dropping an activity silently."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from service.domain.alert_types import AlertType
from service.domain.care_plan import Action, AlertView, AssessmentView, PlanContext, plan_activities
from service.domain.safety import RenalCheck
from service.fhir.care_plan import build_care_plan, previous_activities
from service.fhir.validation import validate_resource
from tests.support.paths import FIXTURES

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
    "index:2025-05-01",
    "evidence",
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


OK_KIDNEYS = PlanContext(RenalCheck(True, "eGFR 62 on 2026-01-05"))
LOW_EGFR = PlanContext(RenalCheck(False, "eGFR 25 on 2026-01-05 (below 35)", ("Observation/egfr",)))


def stopped_alert(**extra: Any) -> AlertView:
    values: dict[str, Any] = {
        "id": "s1",
        "code": AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON,
        "status": "open",
        "due": date(2026, 1, 1),
        "opened": date(2026, 2, 1),
        "evidence": ("MedicationAdministration/m1",),
        "detail": "Denosumab 60 mg: more than 16 weeks late.",
        "episode": "denosumab-last-dose:2025-03-01",
        **extra,
    }
    return AlertView(**values)


def test_a_patient_with_egfr_25_gets_no_bisphosphonate_recommendation() -> None:
    gap = AlertView("g1", AlertType.TREATMENT_GAP, "open", date(2026, 1, 1), date(2026, 1, 2), (), "gap", "index:x")
    for alert in (stopped_alert(), gap):
        (ok,) = plan_activities([alert], None, (), OK_KIDNEYS)
        (low,) = plan_activities([alert], None, (), LOW_EGFR)
        assert low.action is Action.RENAL_REVIEW
        resource = plan([low])
        assert validate_resource(resource) == []
        detail = by_id(resource)[f"alert-{alert.id}"]
        assert "productCodeableConcept" not in detail  # no zoledronic acid named
        assert "zoledronic" not in json.dumps(detail).lower()
        assert "Specialist review (renal function)" in detail["description"]
        assert "eGFR 25" in detail["description"]
        assert ok.action in (Action.START_FOLLOW_ON, Action.START_TREATMENT)
    overdue = plan_activities([OVERDUE], None, (), LOW_EGFR)[0]
    assert overdue.action is Action.GIVE_DENOSUMAB_NOW_RENAL
    assert "zoledronic" not in json.dumps(by_id(plan([overdue]))).lower()
    # unknown kidney function recommends no bisphosphonate either
    assert plan_activities([stopped_alert()], None)[0].action is Action.RENAL_REVIEW


def test_every_drug_action_adds_a_calcium_and_vitamin_d_check() -> None:
    activities = plan_activities([OVERDUE, stopped_alert()], HIGH, (), OK_KIDNEYS)
    for activity, detail in zip(activities, by_id(plan(activities)).values(), strict=True):
        if detail["kind"] == "MedicationRequest":
            assert "Check serum calcium and 25-OH vitamin D" in detail["description"], activity.action


def test_no_anabolic_switch_for_a_patient_on_denosumab_on_time() -> None:
    assert Action.ANABOLIC_THERAPY in {a.action for a in plan_activities([], HIGH, (), OK_KIDNEYS)}
    on_time = PlanContext(OK_KIDNEYS.renal, denosumab_on_time=True)
    assert Action.ANABOLIC_THERAPY not in {a.action for a in plan_activities([], HIGH, (), on_time)}


@pytest.mark.parametrize(
    ("status", "resolution", "reason", "activity_status", "status_reason"),
    [
        ("resolved", "evidence", None, "completed", None),
        (
            "resolved",
            "superseded",
            "superseded by Denosumab stopped without follow-on",
            "stopped",
            "superseded by Denosumab stopped without follow-on",
        ),
        (
            "resolved",
            "not-applicable",
            "no longer applicable: malignancy in the record",
            "cancelled",
            "no longer applicable: malignancy in the record",
        ),
        ("resolved", None, None, "cancelled", "no longer indicated by the record"),
        ("dismissed", None, "patient declined", "cancelled", "patient declined"),
    ],
)
def test_activity_status_says_how_an_alert_ended(
    status: str, resolution: str | None, reason: str | None, activity_status: str, status_reason: str | None
) -> None:
    alert = stopped_alert(status=status, resolution=resolution, reason=reason)
    resource = plan(plan_activities([alert], None, (), OK_KIDNEYS))
    assert validate_resource(resource) == []
    detail = by_id(resource)["alert-s1"]
    assert detail["status"] == activity_status
    assert detail.get("statusReason") == ({"text": status_reason} if status_reason else None)


@pytest.mark.parametrize(
    ("episode", "action"),
    [
        ("denosumab-follow-on-ordered:2025-03-01", Action.CONFIRM_FOLLOW_ON),
        ("denosumab-verify:2019-01-01", Action.VERIFY_DENOSUMAB_DATE),
    ],
)
def test_confirm_and_verify_alerts_ask_to_confirm_and_verify(episode: str, action: Action) -> None:
    (activity,) = plan_activities([stopped_alert(episode=episode)], None, (), OK_KIDNEYS)
    assert activity.action is action
    assert validate_resource(plan([activity])) == []
