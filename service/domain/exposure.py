"""Drug exposure read from the medication timeline: which days a record covers, whether a patient is treated, and
where denosumab stands.

docs/sources/alerts.md, 'What counts as evidence', 'How long a statement covers' and 'Follow-on after denosumab'.
The alert rules, the risk model's features and the care plan all ask this module, so "treated" means the same
everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from service.domain.drugs import BISPHOSPHONATES, TREATMENT_GAP_DRUGS, Drug
from service.domain.medication_timeline import MedicationEvent

__all__ = [
    "COVERAGE_DAYS",
    "FOLLOW_ON_DRUGS",
    "ONCOLOGY_ANTIRESORPTIVES",
    "DenosumabState",
    "ExposureRules",
    "covered_until",
    "denosumab_drugs",
    "denosumab_state",
    "supply_days",
    "treated_at",
    "treatment_drugs",
    "treatment_status",
]


@dataclass(frozen=True, slots=True)
class ExposureRules:
    """The day counts exposure is read with (docs/sources/alerts.md defaults; AlertConfig carries the configured
    values)."""

    denosumab_due_days: int = 152  # 5 months: schedule the next dose
    denosumab_interval_days: int = 183  # 60 mg every 6 months (label)
    denosumab_overdue_days: int = 213  # 6 months + 4 weeks (Lyu 2020's on-time window)
    denosumab_stopped_days: int = 295  # more than 16 weeks late: vertebral-fracture HR 3.91 (Lyu 2020)
    # An active order not renewed, dispensed or given for this long is stale: most prescriptions are valid for at
    # most a year, so a years-old live order is a record never closed, not a course (docs/sources/alerts.md asks for a
    # rule).
    request_live_days: int = 365
    calcitonin_counts: bool = False
    denosumab_unknown_strength_counts: bool = True


# How long one dose or supply covers when the record does not say (label dosing, docs/sources/codes.md §4.1).
COVERAGE_DAYS: Final[dict[Drug, int]] = {
    Drug.DENOSUMAB_60: 183,
    Drug.DENOSUMAB: 183,
    Drug.DENOSUMAB_120: 28,  # monthly (oncology)
    Drug.ZOLEDRONIC_ACID_5: 365,
    Drug.ZOLEDRONIC_ACID: 365,
    Drug.ZOLEDRONIC_ACID_4: 28,  # every 3-4 weeks (oncology)
    Drug.IBANDRONATE: 90,
    Drug.ALENDRONATE: 90,
    Drug.RISEDRONATE: 90,
    Drug.TERIPARATIDE: 30,
    Drug.ABALOPARATIDE: 30,
    Drug.ROMOSOZUMAB: 30,
    Drug.RALOXIFENE: 90,
    Drug.CALCITONIN: 30,
}
# Oncology-dose antiresorptives raise no osteoporosis alert but are antiresorptive exposure: they close the gap.
ONCOLOGY_ANTIRESORPTIVES: Final = frozenset({Drug.DENOSUMAB_120, Drug.ZOLEDRONIC_ACID_4})
# After denosumab only a bisphosphonate prevents the rebound; teriparatide, abaloparatide (and romosozumab) do not
# (docs/sources/alerts.md, 'Follow-on after denosumab').
FOLLOW_ON_DRUGS: Final = BISPHOSPHONATES | frozenset({Drug.ZOLEDRONIC_ACID_4})
_MONTHLY_DAYS: Final = 60  # unknown-strength denosumab given closer than this is the monthly oncology regimen
_COVERING_STATEMENT: Final = frozenset({"active", "intended"})
_ENDED_STATEMENT: Final = frozenset({"completed", "stopped"})


def treatment_drugs(rules: ExposureRules) -> frozenset[Drug]:
    """The drugs that count as treatment: anti-osteoporosis drugs (raloxifene per HEDIS, calcitonin by site
    setting) and oncology-dose antiresorptives."""
    extra = {Drug.CALCITONIN} if rules.calcitonin_counts else set()
    return TREATMENT_GAP_DRUGS | ONCOLOGY_ANTIRESORPTIVES | extra


def supply_days(event: MedicationEvent) -> float:
    """How many days one dispense or dose covers: its days' supply, else the quantity times the dosing interval
    (4 weekly tablets: 28 days), else the drug's usual interval between doses or supplies."""
    if event.days_supply:
        return event.days_supply
    if event.quantity and event.interval_days:
        return event.quantity * event.interval_days
    return COVERAGE_DAYS.get(event.drug, 30)


def covered_until(event: MedicationEvent, today: date, rules: ExposureRules) -> date | None:
    """The last day this event covers, or None when it covers none.

    - An administration or dispense (completed): its day plus its supply.
    - A statement active or intended: from its start through its end, else its dateAsserted, else today.
    - A statement completed or stopped: its effective period (a completed statement of one day: a dose given
      elsewhere, covering its supply).
    - A request: an active order (not a proposal or plan, not on hold) until its validity ends, at most
      ``request_live_days`` after it was written.
    """
    if event.event in ("administration", "dispense"):
        return event.day + timedelta(days=supply_days(event)) if event.proves_dose else None
    if event.event == "statement":
        if event.status in _COVERING_STATEMENT:
            return max(event.day, event.end_day or event.date_asserted or today)
        if event.status in _ENDED_STATEMENT:
            if event.end_day is not None:
                return max(event.day, event.end_day)
            return event.day + timedelta(days=supply_days(event)) if event.status == "completed" else event.day
        return None
    if event.event == "request" and event.is_order and event.status == "active":
        stale = event.day + timedelta(days=rules.request_live_days)
        return min(event.end_day, stale) if event.end_day is not None else stale
    return None


def treated_at(
    events: Iterable[MedicationEvent], index_day: date, today: date, rules: ExposureRules
) -> list[MedicationEvent]:
    """The events that make a patient treated for the fracture of ``index_day``: a drug active at it, or a course
    started on or after it (by today). Empty: untreated. The one test of "treated" (alert rules and risk model)."""
    drugs = treatment_drugs(rules)
    out: list[MedicationEvent] = []
    for event in events:
        if event.drug not in drugs or event.day > today:
            continue
        if event.day >= index_day:
            # A course started since: a dose, an order, or a statement of use (its period lies after the index).
            if event.starts_course or (event.event == "statement" and event.status in _STATEMENT_STATUSES):
                out.append(event)
            continue
        until = covered_until(event, today, rules)
        if until is not None and until >= index_day:
            out.append(event)
    return out


def denosumab_drugs(events: Sequence[MedicationEvent], rules: ExposureRules) -> frozenset[Drug]:
    """Denosumab for osteoporosis: 60 mg, and unknown strength unless the site says otherwise or it was given
    monthly (the oncology regimen)."""
    drugs = {Drug.DENOSUMAB_60}
    if rules.denosumab_unknown_strength_counts:
        unknown = [e.day for e in events if e.drug is Drug.DENOSUMAB and e.dose_dated]
        if not any((later - earlier).days < _MONTHLY_DAYS for earlier, later in itertools.pairwise(unknown)):
            drugs.add(Drug.DENOSUMAB)
    return frozenset(drugs)


@dataclass(frozen=True, slots=True)
class DenosumabState:
    """Where a patient's osteoporosis denosumab stands today.

    ``status``: none (never on it), on-time, due, overdue, stopped, verify (taken by a statement with no injection
    date: ask for it), switched (a bisphosphonate given since: nothing to do). ``reference`` is the day the timing
    counts from: the last dated dose, or a statement's last covered day when that is later than the dose's window.
    """

    status: str
    reference: date | None = None
    last_dose: MedicationEvent | None = None
    evidence: tuple[MedicationEvent, ...] = ()
    stops: tuple[MedicationEvent, ...] = ()
    follow_on_ordered: MedicationEvent | None = None
    undated: bool = False  # the reference is a statement's covered day, not an injection
    next_change: date | None = None

    @property
    def on_time(self) -> bool:
        """On denosumab and not late (the care plan suggests no switch to an anabolic drug then)."""
        return self.status in ("on-time", "due", "verify")


def denosumab_state(events: Sequence[MedicationEvent], today: date, rules: ExposureRules) -> DenosumabState:
    """Where osteoporosis denosumab stands for this timeline today (docs/sources/alerts.md, 'Denosumab').

    A statement's last covered day is the last known exposure; when it is later than the last dated injection's
    window, no injection date is known: the late rules fire only when they would fire from that day too (the last
    injection cannot have been later), otherwise the answer is "verify the last injection date".
    """
    den = denosumab_drugs(events, rules)
    mine = [e for e in events if e.drug in den and e.day <= today]
    dated = [e for e in mine if e.dose_dated]
    last_dose = dated[-1] if dated else None
    statements = [e for e in mine if e.event == "statement" and not e.dose_dated and e.status in _STATEMENT_STATUSES]
    covers = [(until, e) for e in statements if (until := covered_until(e, today, rules)) is not None]
    cover_day, cover = max(covers, key=lambda c: (c[0], c[1].day)) if covers else (None, None)
    if last_dose is None and cover is None:
        return DenosumabState("none")
    window_end = last_dose.day + timedelta(days=rules.denosumab_due_days) if last_dose else None
    undated = cover_day is not None and (window_end is None or cover_day > window_end)
    reference = cover_day if undated and cover_day is not None else last_dose.day if last_dose else today
    anchor = last_dose.day if last_dose is not None else (cover.day if cover is not None else reference)
    evidence = tuple(e for e in (last_dose, cover if undated else None) if e is not None)
    follow_on = [e for e in events if e.drug in FOLLOW_ON_DRUGS and anchor < e.day <= today]
    if any(e.proves_dose for e in follow_on):
        return DenosumabState("switched", reference, last_dose, evidence)
    ordered = next(
        (
            e
            for e in reversed(follow_on)
            if e.is_order and e.status == "active" and (covered_until(e, today, rules) or e.day) >= today
        ),
        None,
    )
    stops = tuple(e for e in mine if _says_stopped(e, last_dose, anchor))
    ongoing = cover is not None and undated and cover.end_day is None and cover.date_asserted is None
    days = (today - reference).days
    if stops or days > rules.denosumab_stopped_days:
        return DenosumabState("stopped", reference, last_dose, evidence, stops, ordered, undated)
    if days > rules.denosumab_overdue_days:
        nxt = reference + timedelta(days=rules.denosumab_stopped_days + 1)
        return DenosumabState("overdue", reference, last_dose, evidence, (), ordered, undated, nxt)
    if undated:
        later = None if ongoing else reference + timedelta(days=rules.denosumab_overdue_days + 1)
        return DenosumabState("verify", reference, last_dose, evidence, (), ordered, True, later)
    if days >= rules.denosumab_due_days:
        nxt = reference + timedelta(days=rules.denosumab_overdue_days + 1)
        return DenosumabState("due", reference, last_dose, evidence, (), ordered, False, nxt)
    nxt = reference + timedelta(days=rules.denosumab_due_days)
    return DenosumabState("on-time", reference, last_dose, evidence, (), ordered, False, nxt)


_STATEMENT_STATUSES: Final = _COVERING_STATEMENT | _ENDED_STATEMENT
# The model's denosumab-stopped describes the rebound after stopping (Lyu 2020; [8]: fractures within two years of
# stopping): a last exposure more than a year before the index is history, not the rebound.
_STOPPED_LOOKBACK: Final = timedelta(days=365)


def _says_stopped(event: MedicationEvent, last_dose: MedicationEvent | None, anchor: date) -> bool:
    """Whether the record says denosumab was stopped after the last dose (docs/sources/alerts.md: a request or statement
    with status stopped or completed and no later dose).

    "completed" closes a course when it ends one: a statement with an effective period, or an order dated after
    the last injection. A completed statement of one day is a dose given elsewhere, and a completed order dated
    on or before the last injection is that injection's order fulfilled: neither says the drug was stopped.
    """
    if event.event not in ("request", "statement"):
        return False
    day = event.end_day or event.day
    if event.status == "stopped":
        return day >= anchor
    if event.status != "completed":
        return False
    if event.event == "statement":
        return event.period and day >= anchor
    return last_dose is not None and event.day > last_dose.day


def treatment_status(
    events: Sequence[MedicationEvent], index_day: date, today: date, rules: ExposureRules | None = None
) -> tuple[str, tuple[MedicationEvent, ...]]:
    """The risk model's "osteoporosis-treatment" input and the events behind it: denosumab-stopped when the
    denosumab alert would say stopped (same thresholds), treated by the shared test, else none."""
    rules = rules or ExposureRules()
    state = denosumab_state(events, today, rules)
    recent = state.reference is not None and state.reference >= index_day - _STOPPED_LOOKBACK
    if state.status == "stopped" and state.follow_on_ordered is None and recent:
        return "denosumab-stopped", state.evidence + state.stops
    treating = treated_at(events, index_day, today, rules)
    return ("treated", tuple(treating)) if treating else ("none", ())
