"""Fracture-liaison quality measures (docs/measures.md): pure functions of a patient's facts, their alerts and a
period, counted by the evaluation date ``as_of``.

Two steps. First each patient's record is read once into the cases the measures count: the fracture episodes that
started in the period (``index_cases``), the denosumab doses whose next dose fell due in it (``denosumab_doses``) and
the alerts opened in it (``AlertRecord``, built by the adapter). Then ``summarise`` counts one measure's populations
over any subset of those cases (a site, a month), so a year by month and by site is one pass over the data.

The clinical tests are the alert rules' own: ``index_episode`` (eligibility: malignancy, traumatic, under 50),
``treated_at`` and ``denosumab_state`` (exposure.py), with the thresholds of AlertConfig (IOF Capture the Fracture
12/16/52 weeks; denosumab 6 months + 4 weeks late, 16 weeks late: Lyu 2020).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

from service.domain.alert_rules import AlertConfig, index_episode
from service.domain.drugs import Drug
from service.domain.exposure import (
    FOLLOW_ON_DRUGS,
    ExposureRules,
    covered_until,
    denosumab_drugs,
    denosumab_state,
    treated_at,
    treatment_drugs,
)
from service.domain.facts import Fact, FactKind
from service.domain.medication_timeline import MedicationEvent, events_of

__all__ = [
    "MEASURES",
    "AlertRecord",
    "DenosumabDose",
    "DoseOutcome",
    "IndexCase",
    "MeasureDefinition",
    "MeasureId",
    "Period",
    "Summary",
    "combine",
    "denosumab_doses",
    "index_cases",
    "months",
    "patient_cases",
    "populations",
    "summarise",
]


class MeasureId(StrEnum):
    """The measures' ids (Measure/{id}; canonical https://refracture.dev/fhir/Measure/{id})."""

    IDENTIFIED = "fls-identified"
    DXA_12W = "fls-dxa-12w"
    TREATMENT_16W = "fls-treatment-16w"
    ADHERENCE_52W = "fls-adherence-52w"
    TIME_TO_TREATMENT = "fls-time-to-treatment"
    DENOSUMAB_ON_TIME = "denosumab-on-time"
    DENOSUMAB_LATE = "denosumab-late"
    DENOSUMAB_STOPPED = "denosumab-stopped-without-follow-on"
    ALERTS_OPENED = "alerts-opened"
    ALERTS_ACTED_ON = "alerts-acted-on"
    ALERTS_RESOLVED = "alerts-resolved"
    ALERTS_TIME_TO_ACTION = "alerts-time-to-action"


@dataclass(frozen=True, slots=True)
class MeasureDefinition:
    """What a measure counts, in words (the Measure resource and docs/measures.md say the same)."""

    id: MeasureId
    title: str
    scoring: str  # proportion | cohort | continuous-variable (measure-scoring)
    improvement: str | None  # increase | decrease (measure-improvement-notation); None for a count
    description: str
    initial: str
    denominator: str = ""
    exclusion: str = ""
    numerator: str = ""
    observation: str = ""  # continuous-variable: what is measured, and its unit
    unit: str | None = None  # UCUM unit of the score (d, h) for continuous variables
    source: str = ""


_IOF: Final = "IOF Capture the Fracture patient-level KPIs (Javaid 2020, Osteoporos Int 31:1193)"
_FLSDB: Final = "UK FLS-DB (Royal College of Physicians)"
_HEDIS: Final = "HEDIS OMW (NCQA)"
_INDEX: Final = (
    "Patients whose fracture episode started in the period: a completed vertebral augmentation (PVP/PKP) or a "
    "vertebral fracture Condition, dated by performed[x] or onset; events within 365 days are one episode. Not "
    "counted (docs/sources/alerts.md, 'Index event'): a record with a malignancy, traumatic fracture codes without an "
    "osteoporosis code, patients under 50."
)
_DIED: Final = "Patients who died within the window without meeting the numerator."
_DOSES: Final = (
    "Doses of denosumab 60 mg (osteoporosis) whose next dose fell due in the period (dose + 183 days), the outcome "
    "of which is known by the evaluation date: a next dose or a bisphosphonate given, or 295 days passed."
)

MEASURES: Final[dict[MeasureId, MeasureDefinition]] = {
    d.id: d
    for d in (
        MeasureDefinition(
            MeasureId.IDENTIFIED,
            "Patients identified after an index vertebral fracture",
            "cohort",
            None,
            "How many patients the service identified after a fragility vertebral fracture or its augmentation.",
            _INDEX,
            source=f"{_IOF}: KPI identification (spine fractures); {_FLSDB}: KPI 2-3.",
        ),
        MeasureDefinition(
            MeasureId.DXA_12W,
            "DXA (or a documented reason) within 12 weeks",
            "proportion",
            "increase",
            "Share of identified patients with a bone density assessment within 12 weeks (84 days) of the index "
            "fracture, or a documented reason why not.",
            _INDEX,
            "The initial population whose 84-day window has closed by the evaluation date (or who already meet "
            "the numerator).",
            _DIED,
            "A bone density result (DXA T-score or BMD) or a completed bone density scan from 2 years before the "
            "index to 84 days after it (a recent DXA counts, as for the alert), or the episode's "
            "bmd-assessment-gap alert dismissed with a reason (the documented reason).",
            source=f"{_IOF}: DXA within 12 weeks; {_FLSDB}: KPI 5 (DXA within 90 days).",
        ),
        MeasureDefinition(
            MeasureId.TREATMENT_16W,
            "Anti-osteoporosis treatment started within 16 weeks",
            "proportion",
            "increase",
            "Share of identified patients treated within 16 weeks (112 days) of the index fracture.",
            _INDEX,
            "The initial population whose 112-day window has closed by the evaluation date (or who already meet "
            "the numerator).",
            _DIED,
            "Treated by refracture's one test of 'treated' (the treatment-gap alert's): an anti-osteoporosis drug "
            "active at the index, or a course (order, dose, dispense, statement) started from the index to 112 "
            "days after it.",
            source=f"{_IOF}: treatment started within 16 weeks; {_HEDIS}: BMD or a drug within 180 days.",
        ),
        MeasureDefinition(
            MeasureId.ADHERENCE_52W,
            "Adherence at 52 weeks",
            "proportion",
            "increase",
            "Share of treated patients still on treatment 52 weeks (365 days) after the index fracture.",
            "Patients of the index population treated (the shared test) by 365 days after the index.",
            "The initial population whose 365th day has passed by the evaluation date.",
            "Patients who died before day 365.",
            "On day 365: osteoporosis denosumab on time (the last dose at most 6 months + 4 weeks before, or a "
            "statement of use), or another treating drug whose dose, dispense or statement covers that day within "
            "the adherence grace (60 days; a request alone proves no dose).",
            source=f"{_IOF}: adherence at 52 weeks; {_FLSDB}: 52-week follow-up.",
        ),
        MeasureDefinition(
            MeasureId.TIME_TO_TREATMENT,
            "Median days from index to treatment",
            "continuous-variable",
            "decrease",
            "How long treatment took to start after the index fracture: the median over treated patients.",
            _INDEX,
            "Measure population: the initial population treated by the evaluation date (the shared test).",
            observation="Days from the index to the first treating event (0 when a drug was active at the index).",
            unit="d",
            source=f"{_IOF}: treatment within 16 weeks (the time behind it).",
        ),
        MeasureDefinition(
            MeasureId.DENOSUMAB_ON_TIME,
            "Denosumab doses on time",
            "proportion",
            "increase",
            "Share of denosumab 60 mg doses followed by the next dose at most 4 weeks late.",
            _DOSES,
            "The initial population whose outcome is known.",
            "Doses of patients who died before the outcome was known.",
            "The next dose given at most 213 days (6 months + 4 weeks) after the dose.",
            source=(
                "docs/sources/alerts.md 'Denosumab' (label: every 6 months; Lyu 2020: on time = at most 4 weeks late)."
            ),
        ),
        MeasureDefinition(
            MeasureId.DENOSUMAB_LATE,
            "Denosumab doses late",
            "proportion",
            "decrease",
            "Share of denosumab 60 mg doses followed by the next dose more than 4 weeks but at most 16 weeks late.",
            _DOSES,
            "The initial population whose outcome is known.",
            "Doses of patients who died before the outcome was known.",
            "The next dose given 214 to 295 days after the dose (and no bisphosphonate before it).",
            source="docs/sources/alerts.md 'Denosumab' (denosumab-overdue); Lyu 2020.",
        ),
        MeasureDefinition(
            MeasureId.DENOSUMAB_STOPPED,
            "Denosumab stopped without a follow-on",
            "proportion",
            "decrease",
            "Share of denosumab 60 mg doses after which neither a next dose nor a bisphosphonate came within 295 days "
            "(more than 16 weeks late: vertebral-fracture hazard ratio 3.91, Lyu 2020).",
            _DOSES,
            "The initial population whose outcome is known.",
            "Doses of patients who died before the outcome was known.",
            "No denosumab dose and no bisphosphonate dose within 295 days of the dose.",
            source="docs/sources/alerts.md 'Denosumab' (denosumab-stopped-without-follow-on); ECTS 2021 (follow-on).",
        ),
        MeasureDefinition(
            MeasureId.ALERTS_OPENED,
            "Alerts opened",
            "cohort",
            None,
            "How many alerts refracture opened in the period (every code).",
            "Alerts opened in the period (by the opening date in REFRACTURE_TIMEZONE).",
            source="refracture's worklist (docs/sources/alerts.md).",
        ),
        MeasureDefinition(
            MeasureId.ALERTS_ACTED_ON,
            "Alerts acted on",
            "proportion",
            "increase",
            "Share of the alerts opened in the period that a person acted on by the evaluation date.",
            "Alerts opened in the period.",
            "The initial population.",
            "Alerts resolved by the record (a dose, a DXA) before anyone acted: nothing was left to do.",
            "Alerts with a worklist action (acknowledge, assign, snooze, note, dismiss, reopen) by a person, or their "
            "Task completed at the EHR.",
            source="refracture's worklist (docs/sources/alerts.md 'Lifecycle').",
        ),
        MeasureDefinition(
            MeasureId.ALERTS_RESOLVED,
            "Alerts resolved",
            "proportion",
            "increase",
            "Share of the alerts opened in the period that the record resolved by the evaluation date.",
            "Alerts opened in the period.",
            "The initial population.",
            "",
            "Alerts resolved (by evidence, or no longer applicable) by the evaluation date; dismissed ones are not.",
            source="refracture's worklist (docs/sources/alerts.md 'Lifecycle').",
        ),
        MeasureDefinition(
            MeasureId.ALERTS_TIME_TO_ACTION,
            "Median hours from alert to action",
            "continuous-variable",
            "decrease",
            "How long alerts waited for a person's first action: the median over alerts acted on.",
            "Alerts opened in the period.",
            "Measure population: the alerts acted on by the evaluation date.",
            observation="Hours from the alert's opening to the first worklist action.",
            unit="h",
            source="refracture's worklist (docs/sources/alerts.md 'Lifecycle').",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Period:
    """A reporting period: calendar days, both ends included."""

    start: date
    end: date

    def holds(self, day: date) -> bool:
        """Whether the day is in the period."""
        return self.start <= day <= self.end


def months(period: Period) -> list[Period]:
    """The calendar months that make up a period (the first and last cut to it)."""
    out: list[Period] = []
    first = period.start
    while first <= period.end:
        nxt = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        out.append(Period(first, min(period.end, nxt - timedelta(days=1))))
        first = nxt
    return out


@dataclass(frozen=True, slots=True)
class IndexCase:
    """A fracture episode that started in the period, and what followed it by the evaluation date."""

    patient_id: str
    site: str
    index_day: date
    died: date | None = None
    dxa_day: date | None = None  # the first bone density result or scan from the look-back on
    dxa_reason: bool = False  # the episode's bmd-assessment-gap alert dismissed with a reason
    treated_day: date | None = None  # the first day treated (the index itself when a drug was active at it)
    adherent: bool | None = None  # on treatment on day 365; None: not yet known, or not treated by then


class DoseOutcome(StrEnum):
    """What followed a denosumab dose."""

    ON_TIME = "on-time"  # next dose within 213 days
    LATE = "late"  # next dose within 214-295 days
    SWITCHED = "switched"  # a bisphosphonate first, within 295 days
    STOPPED = "stopped"  # nothing within 295 days
    PENDING = "pending"  # not known yet


@dataclass(frozen=True, slots=True)
class DenosumabDose:
    """One osteoporosis denosumab dose and what followed it."""

    patient_id: str
    site: str
    dose_day: date
    due_day: date
    outcome: DoseOutcome
    died: date | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert as the measures see it.

    ``first_action_at`` is the first action on it: a worklist action by a person, or its Task completed at the EHR
    (the adapter reads both from the alert's history; docs/measures.md).
    """

    patient_id: str
    site: str
    code: str
    opened_day: date
    opened_at: datetime
    first_action_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """One measure's populations over a set of cases.

    FHIR's counting (MeasureReport): the denominator includes its exclusions; the score of a proportion is
    numerator / (denominator - exclusions). ``pending`` are in the initial population but not (yet) in the
    denominator: their window is still open on the evaluation date. Continuous variables: ``denominator`` is the
    measure population and ``score`` the median observation.
    """

    measure: MeasureId
    initial: int
    denominator: int = 0
    exclusions: int = 0
    numerator: int = 0
    score: float | None = None
    pending: int = 0
    observations: tuple[float, ...] = ()  # continuous variables: each member's value (a median is not additive)


def combine(measure: MeasureId, parts: Iterable[Summary]) -> Summary:
    """One summary of several disjoint sets of cases (every site from each site's): counts add up, the score is
    recomputed (a proportion's from the sums, a median from all the observations)."""
    parts = list(parts)
    initial = sum(p.initial for p in parts)
    denominator = sum(p.denominator for p in parts)
    exclusions = sum(p.exclusions for p in parts)
    numerator = sum(p.numerator for p in parts)
    pending = sum(p.pending for p in parts)
    if MEASURES[measure].scoring == "continuous-variable":
        observations = tuple(o for p in parts for o in p.observations)
        return Summary(
            measure, initial, denominator, score=_median(observations), pending=pending, observations=observations
        )
    scored = denominator - exclusions
    score = numerator / scored if scored and MEASURES[measure].scoring == "proportion" else None
    return Summary(measure, initial, denominator, exclusions, numerator, score, pending)


# --- patient level ------------------------------------------------------------------------------------------------

_DXA_KINDS: Final = frozenset({FactKind.DXA_T_SCORE, FactKind.DXA_BMD})


def _died(facts: Sequence[Fact]) -> date | None:
    # An undated death (deceasedBoolean) cannot be placed in a window: it excludes nobody.
    days = [f.effective_date for f in facts if f.kind is FactKind.DECEASED and f.effective_date is not None]
    return min(days) if days else None


def _known(facts: Iterable[Fact], as_of: date) -> tuple[list[Fact], list[MedicationEvent]]:
    known = [f for f in facts if f.effective_date is None or f.effective_date <= as_of]
    return known, [e for e in events_of(known) if e.day <= as_of]


def index_cases(
    patient_id: str,
    site: str,
    facts: Iterable[Fact],
    period: Period,
    as_of: date,
    config: AlertConfig | None = None,
    dxa_reasons: Collection[date] = (),
) -> list[IndexCase]:
    """The patient's fracture episodes that started in the period (alert_rules.index_episode, seen at the period's
    end), with their DXA, treatment and adherence by ``as_of``.

    Args:
        dxa_reasons: the index days whose bmd-assessment-gap alert was dismissed with a reason.
    """
    return patient_cases(patient_id, site, facts, period, as_of, config, dxa_reasons)[0]


def denosumab_doses(
    patient_id: str,
    site: str,
    facts: Iterable[Fact],
    period: Period,
    as_of: date,
    config: AlertConfig | None = None,
) -> list[DenosumabDose]:
    """The patient's osteoporosis denosumab doses whose next dose fell due in the period, and what followed."""
    return patient_cases(patient_id, site, facts, period, as_of, config)[1]


@functools.cache
def _rules(config: AlertConfig) -> ExposureRules:
    return config.rules()  # the same few configurations, asked for once per patient


_INDEX_KINDS: Final = frozenset({FactKind.VERTEBRAL_AUGMENTATION, FactKind.VERTEBRAL_FRACTURE})


def patient_cases(
    patient_id: str,
    site: str,
    facts: Iterable[Fact],
    period: Period,
    as_of: date,
    config: AlertConfig | None = None,
    dxa_reasons: Collection[date] = (),
) -> tuple[list[IndexCase], list[DenosumabDose]]:
    """Both kinds of case of one patient, reading the record once (index_cases, denosumab_doses)."""
    config = config or AlertConfig()
    known, events = _known(facts, as_of)
    rules = _rules(config)
    died = _died(known)
    return (
        _index_cases(patient_id, site, known, events, period, as_of, config, rules, died, dxa_reasons),
        _denosumab_doses(patient_id, site, events, period, as_of, config, rules, died),
    )


def _index_cases(
    patient_id: str,
    site: str,
    known: list[Fact],
    events: list[MedicationEvent],
    period: Period,
    as_of: date,
    config: AlertConfig,
    rules: ExposureRules,
    died: date | None,
    dxa_reasons: Collection[date],
) -> list[IndexCase]:
    out: list[IndexCase] = []
    # Days that could start an episode in the period: none, no case (and no need to ask index_episode).
    starts = sorted(
        {
            f.effective_date
            for f in known
            if f.kind in _INDEX_KINDS and f.effective_date is not None and period.holds(f.effective_date)
        }
    )
    today = min(period.end, as_of)
    # index_episode reads no medication fact (they are most of a record): leave them out of its many passes.
    record = [f for f in known if f.kind is not FactKind.MEDICATION]
    while starts:
        episode = index_episode(record, today, config.episode_days, config.minimum_age)
        if episode is None or episode.day < period.start:
            break
        index = episode.day
        since = index - timedelta(days=config.bmd_lookback_days)
        scans = [
            f.effective_date
            for f in known
            if f.effective_date is not None
            and since <= f.effective_date
            and (
                (f.kind in _DXA_KINDS and f.value_num is not None)
                or (f.kind is FactKind.BONE_DENSITY_SCAN and f.status == "completed")
            )
        ]
        treating = treated_at(events, index, as_of, rules)
        treated = min((max(e.day, index) for e in treating), default=None)
        day_365 = index + timedelta(days=config.adherence_days)
        adherent = None
        if treated is not None and treated <= day_365 <= as_of:
            adherent = _on_treatment([e for e in events if e.day <= day_365], day_365, config, rules)
        out.append(
            IndexCase(patient_id, site, index, died, min(scans, default=None), index in dxa_reasons, treated, adherent)
        )
        # An earlier episode in the period needs an index event before this one's start.
        starts = [d for d in starts if d < index]
        today = index - timedelta(days=1)
    return out


def _on_treatment(events: Sequence[MedicationEvent], day: date, config: AlertConfig, rules: ExposureRules) -> bool:
    """Whether the patient is on treatment on this day: denosumab on time, or another treating drug's dose,
    dispense or statement covering the day within the adherence grace."""
    if denosumab_state(events, day, rules).status in ("on-time", "due", "verify"):
        return True
    others = treatment_drugs(rules) - denosumab_drugs(events, rules)
    grace = timedelta(days=config.adherence_grace_days)
    for event in events:
        if event.drug not in others or event.event == "request":
            continue
        until = covered_until(event, day, rules)
        if until is not None and until + grace >= day:
            return True
    return False


_ANY_DENOSUMAB: Final = frozenset({Drug.DENOSUMAB_60, Drug.DENOSUMAB})


def _denosumab_doses(
    patient_id: str,
    site: str,
    events: list[MedicationEvent],
    period: Period,
    as_of: date,
    config: AlertConfig,
    rules: ExposureRules,
    died: date | None,
) -> list[DenosumabDose]:
    if not any(e.drug in _ANY_DENOSUMAB for e in events):
        return []
    mine = denosumab_drugs(events, rules)
    days = sorted({e.day for e in events if e.drug in mine and e.dose_dated})
    follow_ons = sorted({e.day for e in events if e.drug in FOLLOW_ON_DRUGS and e.proves_dose})
    out: list[DenosumabDose] = []
    for n, day in enumerate(days):
        due = day + timedelta(days=config.denosumab_interval_days)
        if not period.holds(due):
            continue
        following = days[n + 1] if n + 1 < len(days) else None
        follow_on = next((d for d in follow_ons if d > day), None)
        outcome = _dose_outcome(day, following, follow_on, as_of, config)
        out.append(DenosumabDose(patient_id, site, day, due, outcome, died))
    return out


def _dose_outcome(
    day: date, following: date | None, follow_on: date | None, as_of: date, config: AlertConfig
) -> DoseOutcome:
    late = (following - day).days if following is not None else None
    switch = (follow_on - day).days if follow_on is not None else None
    if late is not None and late <= config.denosumab_overdue_days:
        return DoseOutcome.ON_TIME
    if switch is not None and switch <= config.denosumab_stopped_days and (late is None or switch < late):
        return DoseOutcome.SWITCHED
    if late is not None and late <= config.denosumab_stopped_days:
        return DoseOutcome.LATE
    if (as_of - day).days > config.denosumab_stopped_days:
        return DoseOutcome.STOPPED
    return DoseOutcome.PENDING


# --- counting -----------------------------------------------------------------------------------------------------


def _proportion(measure: MeasureId, flags: Iterable[tuple[bool, bool, bool]]) -> Summary:
    """flags: (in the denominator, excluded, in the numerator) for each member of the initial population."""
    initial = denominator = exclusions = numerator = 0
    for in_denominator, excluded, met in flags:
        initial += 1
        if not in_denominator:
            continue
        denominator += 1
        if met:
            numerator += 1
        elif excluded:
            exclusions += 1
    scored = denominator - exclusions
    score = numerator / scored if scored else None
    return Summary(measure, initial, denominator, exclusions, numerator, score, initial - denominator)


def _window(case: IndexCase, met_by: date | None, days: int, as_of: date) -> tuple[bool, bool, bool]:
    end = case.index_day + timedelta(days=days)
    met = met_by is not None and met_by <= end
    closed = end <= as_of
    excluded = case.died is not None and case.died <= end
    return met or closed or excluded, excluded, met


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


Flags = tuple[str, bool, bool, bool]  # patient, in the denominator (measure population), excluded, numerator met


def _flags(
    measure: MeasureId,
    cases: Sequence[IndexCase],
    doses: Sequence[DenosumabDose],
    alerts: Sequence[AlertRecord],
    as_of: date,
    config: AlertConfig,
) -> list[Flags]:
    """Each member of the measure's initial population, and where it falls (the one place the populations are
    decided: summarise counts them, populations lists their patients)."""
    if measure is MeasureId.IDENTIFIED:
        return [(c.patient_id, False, False, False) for c in cases]
    if measure is MeasureId.DXA_12W:
        return [
            (c.patient_id, *_with_reason(_window(c, c.dxa_day, config.bmd_gap_days, as_of), c.dxa_reason))
            for c in cases
        ]
    if measure is MeasureId.TREATMENT_16W:
        return [(c.patient_id, *_window(c, c.treated_day, config.treatment_gap_days, as_of)) for c in cases]
    if measure is MeasureId.ADHERENCE_52W:
        year = timedelta(days=config.adherence_days)
        return [
            (
                c.patient_id,
                c.adherent is not None or _dead_by(c.died, c.index_day, config.adherence_days),
                _dead_by(c.died, c.index_day, config.adherence_days),
                c.adherent is True,
            )
            for c in cases
            if c.treated_day is not None and c.treated_day <= c.index_day + year
        ]
    if measure is MeasureId.TIME_TO_TREATMENT:
        return [(c.patient_id, c.treated_day is not None, False, False) for c in cases]
    if measure in _DOSE_NUMERATORS:
        wanted = _DOSE_NUMERATORS[measure]
        return [
            (
                d.patient_id,
                d.outcome is not DoseOutcome.PENDING or d.died is not None,
                d.outcome is DoseOutcome.PENDING and d.died is not None,
                d.outcome is wanted,
            )
            for d in doses
        ]
    if measure is MeasureId.ALERTS_ACTED_ON:
        return [
            (a.patient_id, True, a.first_action_at is None and a.resolved_at is not None, a.first_action_at is not None)
            for a in alerts
        ]
    if measure is MeasureId.ALERTS_RESOLVED:
        return [(a.patient_id, True, False, a.resolved_at is not None) for a in alerts]
    if measure is MeasureId.ALERTS_TIME_TO_ACTION:
        return [(a.patient_id, a.first_action_at is not None, False, False) for a in alerts]
    return [(a.patient_id, False, False, False) for a in alerts]  # alerts opened


def summarise(
    measure: MeasureId,
    cases: Sequence[IndexCase],
    doses: Sequence[DenosumabDose],
    alerts: Sequence[AlertRecord],
    as_of: date,
    config: AlertConfig | None = None,
) -> Summary:
    """One measure's populations over these cases (already limited to a period and site by the caller)."""
    config = config or AlertConfig()
    scoring = MEASURES[measure].scoring
    if scoring == "cohort":
        return Summary(measure, len(cases) if measure is MeasureId.IDENTIFIED else len(alerts))
    if scoring == "proportion":
        return _proportion(measure, (f[1:] for f in _flags(measure, cases, doses, alerts, as_of, config)))
    if measure is MeasureId.TIME_TO_TREATMENT:
        days = tuple(float((c.treated_day - c.index_day).days) for c in cases if c.treated_day is not None)
        return Summary(
            measure, len(cases), len(days), score=_median(days), pending=len(cases) - len(days), observations=days
        )
    hours = tuple(
        (a.first_action_at - a.opened_at).total_seconds() / 3600 for a in alerts if a.first_action_at is not None
    )
    return Summary(
        measure, len(alerts), len(hours), score=_median(hours), pending=len(alerts) - len(hours), observations=hours
    )


def populations(
    measure: MeasureId,
    cases: Sequence[IndexCase],
    doses: Sequence[DenosumabDose],
    alerts: Sequence[AlertRecord],
    as_of: date,
    config: AlertConfig | None = None,
) -> dict[str, list[str]]:
    """The patients in each of the measure's populations (the drill-down behind a report's counts), by FHIR
    measure-population code; each patient once per population, sorted."""
    flags = _flags(measure, cases, doses, alerts, as_of, config or AlertConfig())
    scoring = MEASURES[measure].scoring

    def ids(members: Iterable[Flags]) -> list[str]:
        return sorted({m[0] for m in members})

    out = {"initial-population": ids(flags)}
    if scoring == "proportion":
        out["denominator"] = ids(f for f in flags if f[1])
        out["denominator-exclusion"] = ids(f for f in flags if f[1] and f[2] and not f[3])
        out["numerator"] = ids(f for f in flags if f[1] and f[3])
    elif scoring == "continuous-variable":
        out["measure-population"] = ids(f for f in flags if f[1])
    return out


_DOSE_NUMERATORS: Final = {
    MeasureId.DENOSUMAB_ON_TIME: DoseOutcome.ON_TIME,
    MeasureId.DENOSUMAB_LATE: DoseOutcome.LATE,
    MeasureId.DENOSUMAB_STOPPED: DoseOutcome.STOPPED,
}


def _with_reason(flags: tuple[bool, bool, bool], reason: bool) -> tuple[bool, bool, bool]:
    in_denominator, excluded, met = flags
    return (in_denominator or reason, excluded, met or reason)


def _dead_by(died: date | None, index: date, days: int) -> bool:
    return died is not None and died <= index + timedelta(days=days)
