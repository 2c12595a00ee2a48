"""What refracture says at the point of care (CDS Hooks): the patient's stored state and the order check.

Pure: the cards' JSON is built in service.fhir.cds_cards. The order check follows docs/sources/alerts.md ('Denosumab'):
stopping denosumab without a follow-on drug lets bone turnover rebound and causes multiple vertebral fractures, so a
denosumab order should come with a plan for what follows it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final

from service.domain.alert_types import AlertType
from service.domain.drugs import Drug
from service.domain.exposure import FOLLOW_ON_DRUGS
from service.domain.facts import Fact
from service.domain.medication_timeline import MedicationEvent
from service.domain.risk_parameters import FACTORS
from service.domain.safety import RenalCheck, renal_check

__all__ = [
    "DENOSUMAB_OSTEOPOROSIS",
    "CdsAlert",
    "DraftDrug",
    "Factor",
    "OrderFinding",
    "PatientState",
    "RiskSummary",
    "Verdict",
    "factor_of",
    "follow_on_planned",
    "review_orders",
    "top_factors",
]

# Denosumab for osteoporosis: 60 mg, or of unknown strength (counted as 60 mg, as the alert rules do by default);
# 120 mg is the oncology product, out of scope (docs/sources/alerts.md).
DENOSUMAB_OSTEOPOROSIS: Final = frozenset({Drug.DENOSUMAB_60, Drug.DENOSUMAB})
# What can follow denosumab (docs/sources/alerts.md, 'Follow-on after denosumab'): a bisphosphonate only; teriparatide
# or abaloparatide after denosumab does not prevent the rebound. Denosumab 60 mg is given every 6 months
# (docs/sources/alerts.md): the follow-on drug is due then if denosumab stops.
DENOSUMAB_INTERVAL: Final = timedelta(days=183)
_LABELS: Final = {f.code: f.label for f in FACTORS}


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor of the stored assessment: how far it moved the patient's log-odds from the population's."""

    code: str
    label: str
    log_odds: float


@dataclass(frozen=True, slots=True)
class RiskSummary:
    """The latest stored assessment."""

    assessment_id: str
    probability: float
    low: float
    high: float
    band: str  # low | moderate | high
    model_version: str
    assessed_on: date
    factors: tuple[Factor, ...]  # known inputs with their effect
    missing: tuple[Factor, ...]  # inputs the record lacks (log_odds 0)


@dataclass(frozen=True, slots=True)
class CdsAlert:
    """An active alert."""

    id: str
    code: AlertType
    status: str
    priority: str  # routine | urgent
    due: date
    detail: str
    episode: str = ""  # what it is about; a verify or confirm episode asks for something other than a dose


@dataclass(frozen=True, slots=True)
class PatientState:
    """Everything refracture has stored about a patient that the cards use."""

    patient_id: str
    risk: RiskSummary | None
    alerts: tuple[CdsAlert, ...]
    medications: tuple[MedicationEvent, ...]
    kidney: tuple[Fact, ...] = ()  # eGFR and CKD facts: a bisphosphonate is suggested only when they allow it

    def renal(self, today: date | None) -> RenalCheck:
        """Whether the kidneys allow suggesting a bisphosphonate today (docs/sources/alerts.md, 'Safe
        recommendations')."""
        return renal_check(self.kidney, today)

    @property
    def known(self) -> bool:
        """Whether refracture holds anything about the patient at all."""
        return self.risk is not None or bool(self.alerts) or bool(self.medications)


@dataclass(frozen=True, slots=True)
class DraftDrug:
    """A drug named by an order being selected or signed (or by a prefetched order)."""

    drug: Drug
    reference: str | None  # "MedicationRequest/id" when the order has an id
    triggering: bool = True  # in order-select, only the newly selected orders trigger the check


class Verdict(StrEnum):
    """What the order check found."""

    FOLLOW_ON_MISSING = "follow-on-missing"  # denosumab ordered, nothing planned to follow it
    UNKNOWN_PATIENT = "unknown-patient"  # denosumab ordered for a patient refracture has no record of


@dataclass(frozen=True, slots=True)
class OrderFinding:
    """The order check's finding."""

    verdict: Verdict
    orders: tuple[str, ...]  # the denosumab orders concerned (references, where they have ids)
    last_denosumab: date | None  # the last recorded denosumab event (dose or order)
    follow_on_from: date  # when a follow-on drug would be due if denosumab stopped after this order
    renal: RenalCheck | None = None  # whether a bisphosphonate follow-on may be suggested


def factor_of(code: str, log_odds: float = 0.0) -> Factor:
    """A factor with its label from the parameter table (the code itself for a factor no longer there)."""
    return Factor(code, _LABELS.get(code, code), log_odds)


def top_factors(factors: Iterable[Factor], limit: int = 3) -> list[Factor]:
    """The factors that moved the estimate most, either way."""
    return sorted((f for f in factors if abs(f.log_odds) >= 0.01), key=lambda f: (-abs(f.log_odds), f.code))[:limit]


def _last_denosumab(events: Sequence[MedicationEvent]) -> date | None:
    days = [e.day for e in events if e.drug in DENOSUMAB_OSTEOPOROSIS and (e.starts_course or e.says_stopped)]
    return max(days) if days else None


def follow_on_planned(events: Sequence[MedicationEvent], today: date) -> bool:
    """Whether the record holds a follow-on drug planned or started after denosumab.

    A follow-on counts when it starts a course (a dose, or a live order) on or after the last denosumab event; with
    no denosumab in the record, a follow-on order or dose in the last 6 months counts (a course being planned now).
    """
    since = _last_denosumab(events) or (today - DENOSUMAB_INTERVAL)
    return any(e.drug in FOLLOW_ON_DRUGS and e.starts_course and e.day >= since for e in events)


def review_orders(
    drafts: Sequence[DraftDrug],
    state: PatientState | None,
    today: date,
    prefetched: Sequence[DraftDrug] = (),
) -> OrderFinding | None:
    """The order check of order-select and order-sign.

    Args:
        drafts: the drugs of the draft orders (only the triggering ones start the check; any may be the follow-on).
        state: what refracture stored about the patient (None: nothing).
        today: the day in the hospital's time zone.
        prefetched: drugs of the patient's active orders that the EHR prefetched (a follow-on among them counts).

    Returns:
        None when no osteoporosis denosumab is ordered, or a follow-on drug is planned (in the drafts, the
        prefetched orders or the stored record); otherwise the finding.
    """
    denosumab = [d for d in drafts if d.triggering and d.drug in DENOSUMAB_OSTEOPOROSIS]
    if not denosumab:
        return None
    if any(d.drug in FOLLOW_ON_DRUGS for d in (*drafts, *prefetched)):
        return None
    events = state.medications if state is not None else ()
    if events and follow_on_planned(events, today):
        return None
    orders = tuple(sorted({d.reference for d in denosumab if d.reference}))
    verdict = Verdict.FOLLOW_ON_MISSING if state is not None and state.known else Verdict.UNKNOWN_PATIENT
    renal = state.renal(today) if state is not None else None
    return OrderFinding(verdict, orders, _last_denosumab(events), today + DENOSUMAB_INTERVAL, renal)
