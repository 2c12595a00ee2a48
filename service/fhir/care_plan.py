"""The CarePlan, exactly as docs/sources/contract.md says, built as a dict from the planned activities (validated in
tests)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

from service.domain.alert_types import ALERT_TYPES
from service.domain.care_plan import DRUG_ACTIONS, FINAL_STATUSES, Action, PlannedActivity
from service.domain.safety import CALCIUM_VITAMIN_D
from service.fhir import systems as S

__all__ = ["ACTION_TEXT", "build_care_plan", "previous_activities"]

_DENOSUMAB_60: Final = {"system": S.RXNORM, "code": "993452", "display": "1 ML denosumab 60 MG/ML Prefilled Syringe"}
_ZOLEDRONIC_5: Final = {"system": S.RXNORM, "code": "705824", "display": "zoledronic acid 5 MG/100 ML Injection"}
_DXA: Final = {"system": S.LOINC, "code": "38268-9", "display": "DXA Skeletal system Views for bone density"}
_HU: Final = {"system": S.MEASURE, "code": "vertebral-hu", "display": "vertebral hu"}

# action → (activity kind, coding of the product or action or None, plain words)
ACTION_TEXT: Final[dict[Action, tuple[str, dict[str, str] | None, str]]] = {
    Action.GIVE_DENOSUMAB: ("MedicationRequest", _DENOSUMAB_60, "Schedule the next denosumab 60 mg dose"),
    Action.GIVE_DENOSUMAB_NOW: (
        "MedicationRequest",
        _DENOSUMAB_60,
        "Give the denosumab 60 mg dose now, or start zoledronic acid; check CTX",
    ),
    Action.GIVE_DENOSUMAB_NOW_RENAL: (
        "MedicationRequest",
        _DENOSUMAB_60,
        "Give the denosumab 60 mg dose now; check CTX; specialist review (renal function) before any bisphosphonate",
    ),
    Action.START_FOLLOW_ON: (
        "MedicationRequest",
        _ZOLEDRONIC_5,
        "Start zoledronic acid 5 mg IV (or alendronate) now; CTX at 3 and 6 months",
    ),
    Action.CONFIRM_FOLLOW_ON: (
        "Task",
        None,
        "Confirm the bisphosphonate ordered to follow denosumab was given",
    ),
    Action.VERIFY_DENOSUMAB_DATE: ("Task", None, "Verify the date of the last denosumab injection"),
    Action.RENAL_REVIEW: (
        "ServiceRequest",
        None,
        "Specialist review (renal function): a bisphosphonate needs an eGFR of 35 or more in the last year",
    ),
    Action.ORDER_DXA: ("ServiceRequest", _DXA, "Order a DXA bone density scan"),
    Action.START_TREATMENT: (
        "MedicationRequest",
        None,
        "Start anti-osteoporosis treatment (first line per local protocol)",
    ),
    Action.REVIEW_ADHERENCE: ("Task", None, "Review adherence to the anti-osteoporosis treatment"),
    Action.MEASURE_DXA: ("ServiceRequest", _DXA, "Measure bone density by DXA (a key input of the risk model)"),
    Action.MEASURE_HU: (
        "ServiceRequest",
        _HU,
        "Measure CT Hounsfield units of the treated vertebra (a key input of the risk model)",
    ),
    Action.ANABOLIC_THERAPY: (
        "MedicationRequest",
        None,
        "Consider anabolic therapy (teriparatide, abaloparatide or romosozumab)",
    ),
    Action.EXERCISE: ("ServiceRequest", None, "Exercise and rehabilitation: muscle strengthening and posture"),
    Action.FALL_PREVENTION: ("ServiceRequest", None, "Falls risk assessment and fall prevention"),
    Action.REVIEW_SGLT2: ("Task", None, "Review the SGLT-2 inhibitor (vertebral fracture risk after the fracture)"),
    Action.REVIEW_GLUCOCORTICOIDS: ("Task", None, "Review systemic glucocorticoid use"),
    Action.FOLLOW_UP_IMAGING: ("ServiceRequest", None, "Follow-up imaging of the treated and adjacent levels"),
}
_REASON_TYPES: Final = ("Condition/", "Observation/")  # activity.detail.reasonReference allows these (R4)


def _period(activity: PlannedActivity) -> dict[str, str] | None:
    if activity.due is None:
        return None
    start = activity.start or activity.due
    return {"start": min(start, activity.due).isoformat(), "end": activity.due.isoformat()}


def _detail(activity: PlannedActivity) -> dict[str, Any]:
    kind, coding, words = ACTION_TEXT[activity.action]
    detail: dict[str, Any] = {"kind": kind}
    concept = {"coding": [coding], "text": words} if coding else {"text": words}
    if kind == "MedicationRequest" and coding is not None:
        detail["productCodeableConcept"] = concept
        detail["code"] = {"text": words}
    else:
        detail["code"] = concept
    if activity.alert is not None:
        info = ALERT_TYPES[activity.alert]
        detail["reasonCode"] = [
            {"coding": [{"system": S.ALERT_TYPE, "code": activity.alert.value, "display": info.title}]}
        ]
    reasons = [ref for ref in activity.evidence if ref.startswith(_REASON_TYPES)]
    if reasons:
        detail["reasonReference"] = [{"reference": ref} for ref in reasons]
    detail["status"] = activity.status
    if activity.status_reason and activity.status in ("stopped", "cancelled"):
        detail["statusReason"] = {"text": activity.status_reason}
    period = _period(activity)
    if period:
        detail["scheduledPeriod"] = period
    final = activity.status in FINAL_STATUSES
    description = words + (f" by {activity.due.isoformat()}" if activity.due and not final else "")
    description += f". {activity.detail}" if activity.detail else ""
    if activity.action in DRUG_ACTIONS and not final:
        # docs/sources/alerts.md: every drug action adds "check calcium and 25-OH vitamin D".
        description = description.rstrip(".") + f". {CALCIUM_VITAMIN_D}."
    detail["description"] = description
    return detail


def build_care_plan(
    plan_id: str,
    patient_id: str,
    activities: Sequence[PlannedActivity],
    risk_assessment_id: str | None,
    conditions: Sequence[str],
    period_start: date | None,
) -> dict[str, Any]:
    """The patient's one active CarePlan (without meta: the store adds versionId and lastUpdated).

    Args:
        plan_id: the plan's opaque id, also its identifier.
        patient_id: the EHR's Patient id.
        activities: what the plan asks for now, and what became of earlier asks.
        risk_assessment_id: the latest RiskAssessment (supportingInfo), if any.
        conditions: references to the fracture Conditions the plan addresses.
        period_start: the fracture episode's first day.
    """
    open_items = [a for a in activities if a.status not in FINAL_STATUSES]
    summary = (
        f"Re-fracture prevention after vertebral augmentation: {len(open_items)} open item(s)"
        + (": " + "; ".join(ACTION_TEXT[a.action][2] for a in open_items) if open_items else "")
        + ". Decision support, not a diagnosis."
    )
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "id": plan_id,
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(summary)}</p></div>',
        },
        "identifier": [{"system": f"{S.SID_BASE}/care-plan", "value": plan_id}],
        "status": "active",
        "intent": "plan",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                        "code": "assess-plan",
                        "display": "Assessment and Plan of Treatment",
                    }
                ]
            }
        ],
        "title": "Re-fracture prevention after vertebral augmentation",
        "description": summary,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if period_start is not None:
        plan["period"] = {"start": period_start.isoformat()}
    if conditions:
        plan["addresses"] = [{"reference": ref} for ref in sorted(set(conditions))]
    if risk_assessment_id:
        plan["supportingInfo"] = [{"reference": f"RiskAssessment/{risk_assessment_id}"}]
    if activities:
        plan["activity"] = [{"id": a.key, "detail": _detail(a)} for a in activities]
    return plan


def previous_activities(plan: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(key, action, status) of a stored plan's activities, for carrying them into the next version."""
    out: list[tuple[str, str, str]] = []
    reverse = {words: action.value for action, (_, _, words) in ACTION_TEXT.items()}
    for activity in (plan or {}).get("activity", []):
        detail = activity.get("detail", {})
        words = (detail.get("code") or {}).get("text")
        out.append((str(activity.get("id", "")), reverse.get(str(words), ""), str(detail.get("status", ""))))
    return out
