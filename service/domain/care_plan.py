"""What the care plan asks for: one activity per alert, risk-driven recommendations, and measures to fill gaps.

alerts.md, 'Risk-driven recommendations' and 'Lifecycle'; contract.md, 'CarePlan'. Pure: the FHIR shape is built
in service.fhir.care_plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final

from service.domain.alert_types import AlertType

__all__ = ["Action", "AlertView", "AssessmentView", "PlannedActivity", "plan_activities"]


class Action(StrEnum):
    """A recommended action."""

    GIVE_DENOSUMAB = "give-denosumab"
    GIVE_DENOSUMAB_NOW = "give-denosumab-now"
    START_FOLLOW_ON = "start-follow-on"
    ORDER_DXA = "order-dxa"
    START_TREATMENT = "start-treatment"
    REVIEW_ADHERENCE = "review-adherence"
    MEASURE_DXA = "measure-dxa"
    MEASURE_HU = "measure-hu"
    ANABOLIC_THERAPY = "consider-anabolic-therapy"
    EXERCISE = "exercise-rehabilitation"
    FALL_PREVENTION = "fall-prevention"
    REVIEW_SGLT2 = "review-sglt2-inhibitor"
    REVIEW_GLUCOCORTICOIDS = "review-glucocorticoids"
    FOLLOW_UP_IMAGING = "follow-up-imaging"


ALERT_ACTIONS: Final[dict[AlertType, Action]] = {
    AlertType.DENOSUMAB_DOSE_DUE: Action.GIVE_DENOSUMAB,
    AlertType.DENOSUMAB_OVERDUE: Action.GIVE_DENOSUMAB_NOW,
    AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: Action.START_FOLLOW_ON,
    AlertType.BMD_ASSESSMENT_GAP: Action.ORDER_DXA,
    AlertType.TREATMENT_GAP: Action.START_TREATMENT,
    AlertType.ADHERENCE_CHECK_DUE: Action.REVIEW_ADHERENCE,
}

# Alert state → CarePlan activity status (R4 care-plan-activity-status).
ACTIVITY_STATUS: Final = {
    "open": "not-started",
    "acknowledged": "in-progress",
    "assigned": "scheduled",
    "snoozed": "on-hold",
    "resolved": "completed",
    "dismissed": "cancelled",
}
FINAL_STATUSES: Final = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})

# "Very low BMD/HU" for anabolic therapy: T-score -3.0 or lower (the usual very-high-risk mark) or vertebral HU
# under 65 (the single-study re-fracture cut-offs 65.15 and 64.4 HU, clinical.md §a4).
VERY_LOW_T_SCORE: Final = -3.0
VERY_LOW_HU: Final = 65.0


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the care plan sees it."""

    id: str
    code: AlertType
    status: str
    due: date
    opened: date
    evidence: tuple[str, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class AssessmentView:
    """The latest risk assessment as the care plan sees it."""

    resource_id: str
    band: str
    inputs: Mapping[str, Any]  # known inputs by factor code
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlannedActivity:
    """One CarePlan activity, keyed so the next version can say what became of it."""

    key: str
    action: Action
    status: str
    alert: AlertType | None = None
    due: date | None = None
    start: date | None = None
    evidence: tuple[str, ...] = ()
    detail: str | None = None


def _alert_activity(alert: AlertView) -> PlannedActivity:
    return PlannedActivity(
        key=f"alert-{alert.id}",
        action=ALERT_ACTIONS[alert.code],
        status=ACTIVITY_STATUS.get(alert.status, "unknown"),
        alert=alert.code,
        due=alert.due,
        start=min(alert.opened, alert.due),
        evidence=alert.evidence,
        detail=alert.detail,
    )


def _recommendations(assessment: AssessmentView, open_codes: set[AlertType]) -> list[PlannedActivity]:
    inputs = assessment.inputs
    out: list[PlannedActivity] = []

    def add(action: Action, detail: str) -> None:
        out.append(PlannedActivity(key=action.value, action=action, status="not-started", detail=detail))

    if assessment.band == "high":
        t_score, hu = inputs.get("dxa-t-score"), inputs.get("vertebral-hu")
        if (isinstance(t_score, int | float) and t_score <= VERY_LOW_T_SCORE) or (
            isinstance(hu, int | float) and hu < VERY_LOW_HU
        ):
            add(Action.ANABOLIC_THERAPY, "High re-fracture risk with very low bone density.")
        if inputs.get("sarcopenia") is True:
            add(Action.EXERCISE, "High re-fracture risk with sarcopenia.")
        add(Action.FALL_PREVENTION, "High re-fracture risk.")
        if inputs.get("sglt2-inhibitor") is True:
            add(Action.REVIEW_SGLT2, "SGLT-2 inhibitor around the fracture.")
        if inputs.get("glucocorticoids") is True:
            add(Action.REVIEW_GLUCOCORTICOIDS, "Systemic glucocorticoids in the last year.")
        add(Action.FOLLOW_UP_IMAGING, "High re-fracture risk: image the treated and adjacent levels.")
    # Missing key inputs are asked for whatever the risk; the DXA gap alert already asks for DXA when it is open.
    if "dxa-t-score" in assessment.missing and AlertType.BMD_ASSESSMENT_GAP not in open_codes:
        add(Action.MEASURE_DXA, "No DXA T-score in the record: the risk estimate is wider without it.")
    if "vertebral-hu" in assessment.missing:
        add(Action.MEASURE_HU, "No CT Hounsfield units of the treated vertebra: measure them on the existing CT.")
    return out


def plan_activities(
    alerts: Iterable[AlertView],
    assessment: AssessmentView | None,
    previous: Sequence[tuple[str, str, str]] = (),
) -> list[PlannedActivity]:
    """The activities of the patient's care plan now.

    Args:
        alerts: the patient's active alerts and those closed recently (shown completed or cancelled).
        assessment: the latest risk assessment, if any.
        previous: (key, action, status) of the previous version's activities: a recommendation that is no longer
            indicated is carried once more as completed or cancelled, never silently dropped.

    Returns:
        The activities, alerts first (most urgent first), then recommendations.
    """
    alert_list = sorted(alerts, key=lambda a: (a.status in ("resolved", "dismissed"), a.due, a.code.value))
    activities = [_alert_activity(a) for a in alert_list]
    open_codes = {a.code for a in alert_list if a.status not in ("resolved", "dismissed")}
    if assessment is not None:
        activities += _recommendations(assessment, open_codes)
    present = {a.key for a in activities}
    for key, action, status in previous:
        if key in present or key.startswith("alert-") or status in FINAL_STATUSES:
            continue
        try:
            recommended = Action(action)
        except ValueError:
            continue
        # A measure no longer asked for was done; any other recommendation no longer applies.
        final = "completed" if recommended in (Action.MEASURE_DXA, Action.MEASURE_HU) else "cancelled"
        activities.append(PlannedActivity(key=key, action=recommended, status=final))
    return activities
