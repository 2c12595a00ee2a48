"""What the care plan asks for: one activity per alert, risk-driven recommendations, and measures to fill gaps.

docs/sources/alerts.md, 'Risk-driven recommendations' and 'Lifecycle'; docs/sources/contract.md, 'CarePlan'. Pure: the
FHIR shape is built in service.fhir.care_plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, Final

from service.domain.alert_rules import EPISODE_FOLLOW_ON, EPISODE_VERIFY
from service.domain.alert_types import ALERT_TYPES, AlertType
from service.domain.safety import RenalCheck

__all__ = [
    "DRUG_ACTIONS",
    "Action",
    "AlertView",
    "AssessmentView",
    "PlanContext",
    "PlannedActivity",
    "action_for",
    "plan_activities",
]


class Action(StrEnum):
    """A recommended action."""

    GIVE_DENOSUMAB = "give-denosumab"
    GIVE_DENOSUMAB_NOW = "give-denosumab-now"
    GIVE_DENOSUMAB_NOW_RENAL = "give-denosumab-now-renal-review"  # no bisphosphonate alternative: kidneys
    START_FOLLOW_ON = "start-follow-on"
    CONFIRM_FOLLOW_ON = "confirm-follow-on"  # a bisphosphonate is ordered after denosumab: was it given?
    VERIFY_DENOSUMAB_DATE = "verify-denosumab-date"  # denosumab by a statement, no injection date
    RENAL_REVIEW = "specialist-review-renal"  # a bisphosphonate is due but the kidneys are not known to allow it
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

# Actions that give or start a drug: each adds "check calcium and 25-OH vitamin D" (docs/sources/alerts.md).
DRUG_ACTIONS: Final = frozenset(
    {
        Action.GIVE_DENOSUMAB,
        Action.GIVE_DENOSUMAB_NOW,
        Action.GIVE_DENOSUMAB_NOW_RENAL,
        Action.START_FOLLOW_ON,
        Action.START_TREATMENT,
        Action.ANABOLIC_THERAPY,
    }
)
# Actions that recommend a bisphosphonate, and what replaces them when the kidneys are not known to allow one.
_RENAL_SWAP: Final = {
    Action.START_FOLLOW_ON: Action.RENAL_REVIEW,
    Action.START_TREATMENT: Action.RENAL_REVIEW,
    Action.GIVE_DENOSUMAB_NOW: Action.GIVE_DENOSUMAB_NOW_RENAL,
}

# Alert state → CarePlan activity status (R4 care-plan-activity-status). A resolved alert is completed only when
# evidence (a dose, a DXA) resolved it; superseded by a more severe alert it is stopped, no longer applicable it is
# cancelled, each with a statusReason (docs/sources/alerts.md, 'Activity status on the CarePlan').
ACTIVITY_STATUS: Final = {
    "open": "not-started",
    "acknowledged": "in-progress",
    "assigned": "scheduled",
    "snoozed": "on-hold",
    "dismissed": "cancelled",
}
RESOLUTION_STATUS: Final = {"evidence": "completed", "superseded": "stopped", "not-applicable": "cancelled"}
FINAL_STATUSES: Final = frozenset({"completed", "cancelled", "stopped", "entered-in-error"})

# "Very low BMD/HU" for anabolic therapy: T-score -3.0 or lower (the usual very-high-risk mark) or vertebral HU
# under 65 (the single-study re-fracture cut-offs 65.15 and 64.4 HU, docs/sources/clinical.md §a4).
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
    episode: str = ""
    # For a resolved alert: what resolved it (evidence | superseded | not-applicable) and why, in words.
    resolution: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What the recommendations must respect beyond the alerts and the risk: the kidneys and denosumab."""

    renal: RenalCheck | None = None  # None: not known (no bisphosphonate is recommended then)
    denosumab_on_time: bool = False  # on denosumab and not late: no switch to an anabolic drug


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
    status_reason: str | None = None  # why a stopped or cancelled activity ended


def action_for(code: AlertType, episode: str, renal: RenalCheck | None) -> Action:
    """The action an alert asks for: its code's, unless its episode asks to verify or confirm, or the kidneys do
    not allow the bisphosphonate it would recommend (``renal`` None: not known, so not allowed)."""
    if episode.startswith(EPISODE_VERIFY):
        return Action.VERIFY_DENOSUMAB_DATE
    if episode.startswith(EPISODE_FOLLOW_ON):
        return Action.CONFIRM_FOLLOW_ON
    action = ALERT_ACTIONS[code]
    if action in _RENAL_SWAP and (renal is None or not renal.bisphosphonate_ok):
        return _RENAL_SWAP[action]
    return action


def _alert_status(alert: AlertView) -> tuple[str, str | None]:
    if alert.status == "resolved":
        status = RESOLUTION_STATUS.get(alert.resolution or "", "cancelled")
        return status, None if status == "completed" else alert.reason or "no longer indicated by the record"
    if alert.status == "dismissed":
        return "cancelled", alert.reason or "dismissed by the care team"
    return ACTIVITY_STATUS.get(alert.status, "unknown"), None


def _alert_activity(alert: AlertView, context: PlanContext | None) -> PlannedActivity:
    status, reason = _alert_status(alert)
    action = action_for(alert.code, alert.episode, context.renal if context is not None else None)
    detail = alert.detail
    if action in (Action.RENAL_REVIEW, Action.GIVE_DENOSUMAB_NOW_RENAL) and context is not None:
        why = context.renal.reason if context.renal is not None else "kidney function not known"
        detail = f"{detail} No bisphosphonate recommended: {why}."
    return PlannedActivity(
        key=f"alert-{alert.id}",
        action=action,
        status=status,
        alert=alert.code,
        due=alert.due,
        start=min(alert.opened, alert.due),
        evidence=alert.evidence,
        detail=detail,
        status_reason=reason,
    )


def _recommendations(
    assessment: AssessmentView, open_codes: set[AlertType], context: PlanContext | None
) -> list[PlannedActivity]:
    inputs = assessment.inputs
    out: list[PlannedActivity] = []

    def add(action: Action, detail: str) -> None:
        out.append(PlannedActivity(key=action.value, action=action, status="not-started", detail=detail))

    if assessment.band == "high":
        t_score, hu = inputs.get("dxa-t-score"), inputs.get("vertebral-hu")
        very_low = (isinstance(t_score, int | float) and t_score <= VERY_LOW_T_SCORE) or (
            isinstance(hu, int | float) and hu < VERY_LOW_HU
        )
        # Never a switch away from denosumab given on time: bone is lost in the switch (docs/sources/alerts.md).
        if very_low and not (context is not None and context.denosumab_on_time):
            add(Action.ANABOLIC_THERAPY, "High re-fracture risk with very low bone density.")
        if inputs.get("sarcopenia") is True:
            add(Action.EXERCISE, "High re-fracture risk with sarcopenia.")
        add(Action.FALL_PREVENTION, "High re-fracture risk.")
        if inputs.get("sglt2-inhibitor") is True:
            add(Action.REVIEW_SGLT2, "SGLT-2 inhibitor around the fracture.")
        if inputs.get("glucocorticoids") is True:
            add(Action.REVIEW_GLUCOCORTICOIDS, "Systemic glucocorticoids: 3 months or more at 5 mg/day or more.")
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
    context: PlanContext | None = None,
) -> list[PlannedActivity]:
    """The activities of the patient's care plan now.

    Args:
        alerts: the patient's active alerts and those closed recently (shown completed or cancelled).
        assessment: the latest risk assessment, if any.
        previous: (key, action, status) of the previous version's activities: a recommendation that is no longer
            indicated is carried once more as completed, stopped or cancelled, never silently dropped.
        context: the kidneys and denosumab (None: nothing known, so no bisphosphonate is recommended).

    Returns:
        The activities, alerts first (most urgent first), then recommendations.
    """
    alert_list = sorted(alerts, key=lambda a: (a.status in ("resolved", "dismissed"), a.due, a.code.value))
    activities = [_alert_activity(a, context) for a in alert_list]
    open_codes = {a.code for a in alert_list if a.status not in ("resolved", "dismissed")}
    if assessment is not None:
        activities += _recommendations(assessment, open_codes, context)
    present = {a.key for a in activities}
    for key, action, status in previous:
        if key in present or key.startswith("alert-") or status in FINAL_STATUSES:
            continue
        try:
            recommended = Action(action)
        except ValueError:
            continue
        final, reason = _no_longer_asked(recommended, assessment, open_codes)
        activities.append(PlannedActivity(key=key, action=recommended, status=final, status_reason=reason))
    return activities


def _no_longer_asked(
    action: Action, assessment: AssessmentView | None, open_codes: set[AlertType]
) -> tuple[str, str | None]:
    """A recommendation no longer in the plan: completed when the record now holds what it asked for, stopped
    when an alert asks for it instead, otherwise cancelled."""
    missing = assessment.missing if assessment is not None else ()
    if action is Action.MEASURE_DXA:
        if "dxa-t-score" not in missing and assessment is not None:
            return "completed", None
        if AlertType.BMD_ASSESSMENT_GAP in open_codes:
            return "stopped", f"asked by the alert '{ALERT_TYPES[AlertType.BMD_ASSESSMENT_GAP].title}'"
    if action is Action.MEASURE_HU and "vertebral-hu" not in missing and assessment is not None:
        return "completed", None
    return "cancelled", "no longer indicated by the risk assessment"
