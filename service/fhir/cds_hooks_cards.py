"""CDS Hooks 2.0 cards from refracture's stored state: the risk, each active alert, the denosumab order check.

Cards follow cds-hooks.hl7.org/2.0 ('CDS Service Response'): summary under 140 characters, detail in markdown,
indicator info | warning | critical, source with a label, suggestions whose actions create draft FHIR R4 orders
(validated in tests), selectionBehavior whenever there are suggestions, links and overrideReasons. Card uuids are
deterministic (the patient and what the card is about), so feedback on one alert adds up across visits.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from service.domain.alert_types import ALERT_TYPES, AlertType
from service.domain.care_plan import Action, action_for
from service.domain.cds import CdsAlert, OrderFinding, PatientState, RiskSummary, Verdict, top_factors
from service.domain.safety import CALCIUM_VITAMIN_D, RenalCheck
from service.fhir import systems as S
from service.fhir.care_plan import ACTION_TEXT

__all__ = ["OVERRIDE_REASONS", "OVERRIDE_SYSTEM", "CardContext", "card_uuid", "order_cards", "patient_view_cards"]

OVERRIDE_SYSTEM: Final = f"{S.CANONICAL_BASE}/CodeSystem/cds-override-reason"
OVERRIDE_REASONS: Final[dict[str, str]] = {
    "already-addressed": "Already addressed (done or ordered elsewhere)",
    "patient-declined": "Patient declined",
    "contraindicated": "Contraindicated or not tolerated",
    "not-applicable": "Does not apply to this patient",
    "follow-on-planned": "A follow-on drug is planned outside this order",
    "oncology-indication": "Denosumab for an oncology indication, not osteoporosis",
}
_ALERT_OVERRIDES: Final = ("already-addressed", "patient-declined", "contraindicated", "not-applicable")
_ORDER_OVERRIDES: Final = ("follow-on-planned", "oncology-indication", "patient-declined", "not-applicable")
_NAMESPACE: Final = uuid.UUID("6f1c1d2e-8a53-4f4b-9a43-2f1e0c7d5b11")
_MAX_SUMMARY: Final = 139  # "<140 characters" (cds-hooks 2.0, Card.summary)
# RxNorm ingredient alendronate (46041, V1 in docs/sources/codes.md §4.1; no 70 mg product code is verified there).
_ALENDRONATE: Final = {"system": S.RXNORM, "code": "46041", "display": "alendronate"}
_DECISION_SUPPORT: Final = "Decision support, not a diagnosis."


@dataclass(frozen=True, slots=True)
class CardContext:
    """Where the cards point: the service answering, the patient, and refracture's page for them."""

    service_id: str
    patient_id: str
    page_url: str | None  # absolute URL of the worklist's patient page, when known
    today: date | None = None  # the day in the hospital's time zone (eGFR counts for a year)


def _summary(text: str) -> str:
    if len(text) <= _MAX_SUMMARY:
        return text
    cut = text[: _MAX_SUMMARY - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:") + "…"


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def card_uuid(service_id: str, patient_id: str, key: str) -> str:
    """A card's uuid: the same for the same service, patient and subject (``alert|{alert id}``, ``risk|{id}``)."""
    return _uuid(service_id, patient_id, key)


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def _source(ctx: CardContext, model_version: str | None, topic: dict[str, str] | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {"label": f"refracture (model {model_version})" if model_version else "refracture"}
    if ctx.page_url:
        source["url"] = ctx.page_url
    if topic:
        source["topic"] = topic
    return source


def _links(ctx: CardContext) -> list[dict[str, str]]:
    if not ctx.page_url:
        return []
    return [{"label": "Open this patient in refracture", "url": ctx.page_url, "type": "absolute"}]


def _overrides(codes: Sequence[str]) -> list[dict[str, str]]:
    return [{"system": OVERRIDE_SYSTEM, "code": code, "display": OVERRIDE_REASONS[code]} for code in codes]


def _card(
    ctx: CardContext,
    key: str,
    summary: str,
    detail: str,
    indicator: str,
    source: dict[str, Any],
    suggestions: list[dict[str, Any]] | None = None,
    at_most_one: bool = True,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    this_uuid = card_uuid(ctx.service_id, ctx.patient_id, key)
    card: dict[str, Any] = {
        "uuid": this_uuid,
        "summary": _summary(summary),
        "detail": detail,
        "indicator": indicator,
        "source": source,
    }
    if suggestions:
        for n, suggestion in enumerate(suggestions):
            suggestion["uuid"] = _uuid(this_uuid, str(n))
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one" if at_most_one else "any"
    if overrides:
        card["overrideReasons"] = _overrides(overrides)
    links = _links(ctx)
    if links:
        card["links"] = links
    return card


# --- the orders suggested -------------------------------------------------------------------------------------


def _reason(alert: AlertType | None) -> dict[str, Any]:
    if alert is None:
        return {}
    coding = {"system": S.ALERT_TYPE, "code": alert.value, "display": ALERT_TYPES[alert].title}
    return {"reasonCode": [{"coding": [coding]}]}


def medication_proposal(
    patient_id: str,
    coding: dict[str, str],
    text: str,
    dosage: str,
    alert: AlertType | None = None,
    intent: str = "proposal",
    start: date | None = None,
) -> dict[str, Any]:
    """A draft MedicationRequest: a proposal to order now, or (intent plan) what to give from ``start``."""
    instruction: dict[str, Any] = {"text": dosage}
    if start is not None:
        instruction["timing"] = {"repeat": {"boundsPeriod": {"start": start.isoformat()}}}
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": intent,
        "medicationCodeableConcept": {"coding": [coding], "text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        **_reason(alert),
        "dosageInstruction": [instruction],
        # docs/sources/alerts.md: every drug action adds "check calcium and 25-OH vitamin D".
        "note": [{"text": f"Suggested by refracture. {CALCIUM_VITAMIN_D}. {_DECISION_SUPPORT}"}],
    }


def service_proposal(patient_id: str, coding: dict[str, str], text: str, alert: AlertType | None) -> dict[str, Any]:
    """A draft ServiceRequest (a DXA scan, a CT measurement)."""
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "code": {"coding": [coding], "text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
        **_reason(alert),
        "note": [{"text": f"Suggested by refracture. {_DECISION_SUPPORT}"}],
    }


def _suggest(label: str, resource: dict[str, Any], recommended: bool) -> dict[str, Any]:
    return {
        "label": label,
        "isRecommended": recommended,
        "actions": [{"type": "create", "description": label, "resource": resource}],
    }


def _coding(action: Action) -> dict[str, str]:
    coding = ACTION_TEXT[action][1]
    if coding is None:  # a programming error: only actions with a coding in the table are suggested as orders
        raise ValueError(f"no coding for {action}")
    return coding


def _zoledronic(pid: str, alert: AlertType | None, recommended: bool) -> dict[str, Any]:
    resource = medication_proposal(
        pid, _coding(Action.START_FOLLOW_ON), "zoledronic acid 5 mg IV", "5 mg IV infusion once", alert
    )
    return _suggest("Order zoledronic acid 5 mg IV once", resource, recommended)


def _alendronate(pid: str, alert: AlertType | None) -> dict[str, Any]:
    resource = medication_proposal(pid, _ALENDRONATE, "alendronate 70 mg tablet", "70 mg by mouth once weekly", alert)
    return _suggest("Order alendronate 70 mg once weekly", resource, False)


def _denosumab(pid: str, alert: AlertType, label: str) -> dict[str, Any]:
    resource = medication_proposal(
        pid,
        _coding(Action.GIVE_DENOSUMAB),
        "denosumab 60 mg/mL prefilled syringe",
        "60 mg subcutaneously once; then every 6 months",
        alert,
    )
    return _suggest(label, resource, True)


def _dxa(pid: str, alert: AlertType | None, recommended: bool) -> dict[str, Any]:
    resource = service_proposal(pid, _coding(Action.ORDER_DXA), "DXA bone density scan", alert)
    return _suggest("Order a DXA bone density scan", resource, recommended)


def _alert_suggestions(pid: str, alert: AlertType, action: Action) -> list[dict[str, Any]]:
    if action is Action.GIVE_DENOSUMAB:
        return [_denosumab(pid, alert, "Order the next denosumab 60 mg dose")]
    if action is Action.GIVE_DENOSUMAB_NOW:
        return [_denosumab(pid, alert, "Give denosumab 60 mg now"), _zoledronic(pid, alert, False)]
    if action is Action.GIVE_DENOSUMAB_NOW_RENAL:
        return [_denosumab(pid, alert, "Give denosumab 60 mg now")]
    if action in (Action.START_FOLLOW_ON, Action.START_TREATMENT):
        return [_zoledronic(pid, alert, True), _alendronate(pid, alert)]
    if action is Action.ORDER_DXA:
        return [_dxa(pid, alert, True)]
    # An adherence review, verifying a date, confirming a follow-on, a renal review: conversations, not orders.
    return []


# --- patient-view ----------------------------------------------------------------------------------------------


def _risk_detail(risk: RiskSummary) -> str:
    lines = [
        f"**2-year risk of a new vertebral fracture: {_pct(risk.probability)}** (band **{risk.band}**; "
        f"{_pct(risk.low)}–{_pct(risk.high)} over the inputs the record lacks), assessed {risk.assessed_on}.",
    ]
    top = top_factors(risk.factors)
    if top:
        lines += ["", "What moved it most:"]
        for factor in top:
            way = "raises" if factor.log_odds > 0 else "lowers"
            lines.append(f"- {factor.label}: {way} the risk (odds × {math.exp(factor.log_odds):.2f})")
    if risk.missing:
        names = ", ".join(f.label for f in risk.missing[:6]) + (" …" if len(risk.missing) > 6 else "")
        lines += ["", f"Missing inputs ({len(risk.missing)}, each widens the range): {names}."]
    lines += ["", f"Model {risk.model_version}. {_DECISION_SUPPORT}"]
    return "\n".join(lines)


def _risk_card(state: PatientState, risk: RiskSummary, ctx: CardContext) -> dict[str, Any]:
    missing = {f.code for f in risk.missing}
    gap_open = any(a.code is AlertType.BMD_ASSESSMENT_GAP for a in state.alerts)
    suggestions: list[dict[str, Any]] = []
    if "dxa-t-score" in missing and not gap_open:
        suggestions.append(_dxa(state.patient_id, None, True))
    if "vertebral-hu" in missing:
        words = ACTION_TEXT[Action.MEASURE_HU][2]
        resource = service_proposal(state.patient_id, _coding(Action.MEASURE_HU), words, None)
        suggestions.append(_suggest("Measure CT Hounsfield units of the treated vertebra", resource, False))
    summary = f"Re-fracture risk {risk.band}: {_pct(risk.probability)} within 2 years after vertebral augmentation"
    if missing:
        summary += f" ({len(missing)} inputs missing)"
    return _card(
        ctx,
        f"risk|{risk.assessment_id}",
        summary,
        _risk_detail(risk),
        "warning" if risk.band == "high" else "info",
        _source(ctx, risk.model_version),
        suggestions,
        at_most_one=False,
    )


def _alert_card(
    state: PatientState, alert: CdsAlert, ctx: CardContext, model: str | None, renal: RenalCheck
) -> dict[str, Any]:
    info = ALERT_TYPES[alert.code]
    action = action_for(alert.code, alert.episode, renal)
    words = ACTION_TEXT[action][2]
    parts = [
        f"**{info.title}** — due {alert.due.isoformat()} ({alert.priority}; in refracture's worklist: {alert.status}).",
        alert.detail,
        info.definition,
    ]
    if action in (Action.RENAL_REVIEW, Action.GIVE_DENOSUMAB_NOW_RENAL):
        parts.append(
            f"No bisphosphonate is suggested: {renal.reason}. A specialist review of renal function comes first."
        )
    detail = "\n\n".join([*parts, _DECISION_SUPPORT])
    topic = {"system": S.ALERT_TYPE, "code": alert.code.value, "display": info.title}
    return _card(
        ctx,
        f"alert|{alert.id}",
        f"{info.title}: {words}",
        detail,
        "critical" if alert.priority == "urgent" else "warning",
        _source(ctx, model, topic),
        _alert_suggestions(state.patient_id, alert.code, action),
        overrides=_ALERT_OVERRIDES,
    )


def patient_view_cards(state: PatientState | None, ctx: CardContext) -> list[dict[str, Any]]:
    """The cards of patient-view: the active alerts (most urgent first), then the risk; none for an unknown patient.

    Snoozed alerts are left out: a coordinator has decided to wait, and the card would only repeat it.
    """
    if state is None or not state.known:
        return []
    model = state.risk.model_version if state.risk else None
    shown = [a for a in state.alerts if a.status != "snoozed"]
    shown.sort(key=lambda a: (a.priority != "urgent", a.due, a.code.value))
    renal = state.renal(ctx.today)
    cards = [_alert_card(state, alert, ctx, model, renal) for alert in shown]
    if state.risk is not None:
        cards.append(_risk_card(state, state.risk, ctx))
    return cards


# --- order-select / order-sign ---------------------------------------------------------------------------------


def order_cards(finding: OrderFinding | None, ctx: CardContext) -> list[dict[str, Any]]:
    """The card of the denosumab order check: a warning, an info card for a patient refracture does not know, or
    nothing."""
    if finding is None:
        return []
    pid = ctx.patient_id
    plan = medication_proposal(
        pid,
        _coding(Action.START_FOLLOW_ON),
        "zoledronic acid 5 mg IV",
        "5 mg IV once, about 6 months after the last denosumab injection, if denosumab is stopped; CTX at 3 and "
        "6 months",
        AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON,
        intent="plan",
        start=finding.follow_on_from,
    )
    alendronate = medication_proposal(
        pid,
        _ALENDRONATE,
        "alendronate 70 mg tablet",
        "70 mg by mouth once weekly for 12 months, starting about 6 months after the last denosumab injection, if "
        "denosumab is stopped",
        AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON,
        intent="plan",
        start=finding.follow_on_from,
    )
    suggestions = [
        _suggest(f"Plan zoledronic acid 5 mg IV from {finding.follow_on_from} if denosumab stops", plan, True),
        _suggest(f"Plan alendronate 70 mg weekly from {finding.follow_on_from} if denosumab stops", alendronate, False),
    ]
    why = (
        "Stopping denosumab, or giving a dose more than 4 weeks late, lets bone turnover rebound within months and "
        "causes multiple spontaneous vertebral fractures. A bisphosphonate about 6 months after the last injection "
        "(zoledronic acid 5 mg IV, or a course of alendronate) prevents much of that."
    )
    if finding.renal is None or not finding.renal.bisphosphonate_ok:
        # docs/sources/alerts.md: a bisphosphonate only with an eGFR of 35 or more in the last year and no CKD stage
        # 4-5.
        reason = finding.renal.reason if finding.renal is not None else "kidney function not known"
        suggestions = []
        why += f" No bisphosphonate is suggested here ({reason}): plan a specialist review of renal function."
    key = "order|" + ",".join(finding.orders)
    if finding.verdict is Verdict.UNKNOWN_PATIENT:
        return [
            _card(
                ctx,
                key,
                "Denosumab: plan a follow-on drug for when it stops (refracture has no record of this patient)",
                f"Denosumab is being ordered and no follow-on drug is in the draft orders. refracture holds no "
                f"record of this patient, so it cannot tell whether one is planned elsewhere.\n\n{why}\n\n"
                f"{_DECISION_SUPPORT}",
                "info",
                _source(ctx, None),
                suggestions,
                overrides=_ORDER_OVERRIDES,
            )
        ]
    last = (
        f"the last denosumab in the record is dated {finding.last_denosumab}"
        if finding.last_denosumab
        else ("this is the first denosumab in the record")
    )
    detail = (
        f"Denosumab is being ordered, and neither the draft orders nor this patient's record hold a follow-on drug "
        f"({last}).\n\n{why}\n\nPlan now what follows denosumab if it is ever stopped: the suggestions add a "
        f"planned follow-on from {finding.follow_on_from}.\n\n{_DECISION_SUPPORT}"
    )
    return [
        _card(
            ctx,
            key,
            "Denosumab must not be stopped without a follow-on drug: none is planned for this patient",
            detail,
            "warning",
            _source(ctx, None),
            suggestions,
            overrides=_ORDER_OVERRIDES,
        )
    ]
