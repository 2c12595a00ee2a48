"""The alert rules of shared/domain/alerts.md, as pure functions of (facts, today, thresholds).

Days are counted between calendar dates as the EHR wrote them. Every threshold is configuration with the documented
default. Each finding names the resources that made it fire, its due date, and an episode key (what it is about:
the last denosumab dose, the index fracture), so a dismissed alert stays dismissed until the episode changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from service.domain.alert_types import ALERT_TYPES, AlertType
from service.domain.drugs import ANTI_OSTEOPOROSIS, TREATMENT_GAP_DRUGS, Drug
from service.domain.facts import Fact, FactKind
from service.domain.medication_timeline import MedicationEvent, events_of

__all__ = ["AlertConfig", "AlertFinding", "Evaluation", "IndexEpisode", "evaluate", "index_episode"]


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """The thresholds, in days (alerts.md defaults; IOF Capture the Fracture KPIs for the gap rules)."""

    denosumab_due_days: int = 152  # 5 months: schedule the next dose (a local choice, no source)
    denosumab_interval_days: int = 183  # 60 mg every 6 months (label)
    denosumab_overdue_days: int = 213  # more than 6 months + 4 weeks: late (Lyu 2020's on-time window)
    denosumab_stopped_days: int = 295  # more than 16 weeks late: vertebral-fracture HR 3.91 (Lyu 2020)
    bmd_gap_days: int = 84  # DXA within 12 weeks of the fracture (IOF KPI)
    bmd_lookback_days: int = 730  # a DXA in the 2 years before the fracture counts
    treatment_gap_days: int = 112  # treatment within 16 weeks (IOF KPI)
    adherence_days: int = 365  # adherence checked at 52 weeks (IOF KPI)
    episode_days: int = 365  # index events this close together are one fracture episode
    calcitonin_counts: bool = False  # whether calcitonin closes the treatment gap: a site setting (alerts.md)
    # Denosumab of unknown strength counts as the 60 mg osteoporosis product unless given monthly (oncology).
    denosumab_unknown_strength_counts: bool = True


@dataclass(frozen=True, slots=True)
class AlertFinding:
    """One alert the record calls for now."""

    code: AlertType
    priority: str
    due: date
    evidence: tuple[str, ...]
    episode: str
    detail: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The alerts that fire today, and the next day on which the answer could change without new data."""

    findings: tuple[AlertFinding, ...]
    next_check: date | None


@dataclass(frozen=True, slots=True)
class IndexEpisode:
    """The fracture episode the gap rules count from: its first date and the facts that make it."""

    day: date
    evidence: tuple[str, ...]


# How long one dose or supply covers, when the record does not say (label dosing, shared terminology §4.1).
_COVERAGE_DAYS: Final[dict[Drug, int]] = {
    Drug.DENOSUMAB_60: 183,
    Drug.DENOSUMAB: 183,
    Drug.ZOLEDRONIC_ACID_5: 365,
    Drug.ZOLEDRONIC_ACID: 365,
    Drug.IBANDRONATE: 90,
    Drug.ALENDRONATE: 90,
    Drug.RISEDRONATE: 90,
    Drug.TERIPARATIDE: 30,
    Drug.ABALOPARATIDE: 30,
    Drug.ROMOSOZUMAB: 30,
    Drug.RALOXIFENE: 90,
    Drug.CALCITONIN: 30,
}
_MONTHLY_DAYS: Final = 60  # unknown-strength denosumab given closer than this is the monthly oncology regimen


def _priority(code: AlertType) -> str:
    return ALERT_TYPES[code].priority


def _sources(events: Iterable[MedicationEvent | Fact]) -> tuple[str, ...]:
    return tuple(sorted({e.source for e in events if e.source}))


def index_episode(facts: Iterable[Fact], today: date, episode_days: int = 365) -> IndexEpisode | None:
    """The latest fracture episode: a completed vertebral augmentation or a vertebral fracture Condition.

    Events within ``episode_days`` of the latest one belong to it; the episode starts at the earliest of them (the
    fracture's onset rather than its later operation, as the fracture-liaison standards count).
    """
    events: list[tuple[date, Fact]] = []
    for fact in facts:
        if fact.effective_date is None or fact.effective_date > today:
            continue
        operation = fact.kind is FactKind.VERTEBRAL_AUGMENTATION and fact.status == "completed"
        if operation or fact.kind is FactKind.VERTEBRAL_FRACTURE:
            events.append((fact.effective_date, fact))
    if not events:
        return None
    latest = max(day for day, _ in events)
    episode = [(day, fact) for day, fact in events if latest - day <= timedelta(days=episode_days)]
    return IndexEpisode(min(day for day, _ in episode), _sources(fact for _, fact in episode))


def _osteoporosis_denosumab(events: Sequence[MedicationEvent], config: AlertConfig) -> set[Drug]:
    drugs = {Drug.DENOSUMAB_60}
    if config.denosumab_unknown_strength_counts:
        unknown = [e.day for e in events if e.drug is Drug.DENOSUMAB and e.proves_dose]
        monthly = any((later - earlier).days < _MONTHLY_DAYS for earlier, later in itertools.pairwise(unknown))
        if not monthly:
            drugs.add(Drug.DENOSUMAB)
    return drugs


def _denosumab(
    events: Sequence[MedicationEvent], today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    denosumab = _osteoporosis_denosumab(events, config)
    doses = [e for e in events if e.drug in denosumab and e.proves_dose]
    if not doses:
        return None, None
    last = doses[-1]
    follow_on_drugs = ANTI_OSTEOPOROSIS - denosumab - {Drug.DENOSUMAB}
    follow_on = [e for e in events if e.drug in follow_on_drugs and e.proves_dose and e.day > last.day]
    if follow_on:
        return None, None  # switched: the follow-on drug is what the rules ask for
    days = (today - last.day).days
    due = last.day + timedelta(days=config.denosumab_interval_days)
    stops = [e for e in events if e.drug in denosumab and e.says_stopped and (e.end_day or e.day) >= last.day]
    episode = f"denosumab-last-dose:{last.day.isoformat()}"
    if stops or days > config.denosumab_stopped_days:
        # No day counts in the text: an unchanged record must give an unchanged alert, day after day.
        why = "the record says it was stopped" if stops else "more than 16 weeks late"
        return AlertFinding(
            AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON,
            _priority(AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON),
            due,
            _sources([last, *stops]),
            episode,
            f"Denosumab 60 mg: {why} (last dose {last.day}); no follow-on drug since.",
        ), None
    if days > config.denosumab_overdue_days:
        return AlertFinding(
            AlertType.DENOSUMAB_OVERDUE,
            _priority(AlertType.DENOSUMAB_OVERDUE),
            due,
            _sources([last]),
            episode,
            f"Denosumab 60 mg: last dose {last.day}; the next was due {due}.",
        ), last.day + timedelta(days=config.denosumab_stopped_days + 1)
    if days >= config.denosumab_due_days:
        return AlertFinding(
            AlertType.DENOSUMAB_DOSE_DUE,
            _priority(AlertType.DENOSUMAB_DOSE_DUE),
            due,
            _sources([last]),
            episode,
            f"Denosumab 60 mg: last dose {last.day}; schedule the next by {due}.",
        ), last.day + timedelta(days=config.denosumab_overdue_days + 1)
    return None, last.day + timedelta(days=config.denosumab_due_days)


def _bmd_gap(
    facts: Sequence[Fact], episode: IndexEpisode, today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    since = episode.day - timedelta(days=config.bmd_lookback_days)
    measured = [
        f
        for f in facts
        if f.kind in (FactKind.DXA_T_SCORE, FactKind.DXA_BMD)
        and f.value_num is not None
        and f.effective_date is not None
        and since <= f.effective_date <= today
    ]
    if measured:
        return None, None
    due = episode.day + timedelta(days=config.bmd_gap_days)
    if today < due:
        return None, due
    return AlertFinding(
        AlertType.BMD_ASSESSMENT_GAP,
        _priority(AlertType.BMD_ASSESSMENT_GAP),
        due,
        episode.evidence,
        f"index:{episode.day.isoformat()}",
        f"Fracture episode from {episode.day}; no bone density result since {since}. Order DXA.",
    ), None


def _covers(event: MedicationEvent, day: date) -> bool:
    """Whether a course or dose that began before ``day`` was still active on it."""
    if event.day > day:
        return False
    if event.end_day is not None:
        return event.end_day >= day
    if event.event == "request":
        return event.status in ("active", "on-hold")
    span = event.days_supply or _COVERAGE_DAYS.get(event.drug, 30)
    return (day - event.day).days <= span


def _treatment_gap(
    events: Sequence[MedicationEvent], episode: IndexEpisode, today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    drugs = set(TREATMENT_GAP_DRUGS) | ({Drug.CALCITONIN} if config.calcitonin_counts else set())
    courses = [e for e in events if e.drug in drugs and e.starts_course]
    treated = [e for e in courses if e.day >= episode.day or _covers(e, episode.day)]
    if treated:
        return None, None
    due = episode.day + timedelta(days=config.treatment_gap_days)
    if today < due:
        return None, due
    return AlertFinding(
        AlertType.TREATMENT_GAP,
        _priority(AlertType.TREATMENT_GAP),
        due,
        episode.evidence,
        f"index:{episode.day.isoformat()}",
        f"Fracture episode from {episode.day}; no anti-osteoporosis drug active at it or started since.",
    ), None


def _adherence(
    events: Sequence[MedicationEvent], episode: IndexEpisode, today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    # Denosumab has its own, stricter timing rules; adherence here is about the other drugs.
    drugs = set(TREATMENT_GAP_DRUGS) - {Drug.DENOSUMAB_60, Drug.DENOSUMAB}
    started = [e for e in events if e.drug in drugs and e.starts_course and e.day >= episode.day]
    if not started:
        return None, None
    first = started[0]
    supplied = [e for e in events if e.drug in drugs and e.proves_dose and e.day >= first.day] or [first]
    last = supplied[-1]
    span = int(last.days_supply or last.interval_days or _COVERAGE_DAYS.get(last.drug, 30))
    next_due = last.day + timedelta(days=span)
    check_from = max(first.day + timedelta(days=config.adherence_days), next_due + timedelta(days=1))
    if today < check_from:
        return None, check_from
    return AlertFinding(
        AlertType.ADHERENCE_CHECK_DUE,
        _priority(AlertType.ADHERENCE_CHECK_DUE),
        check_from,
        _sources([first, last]),
        f"course:{first.drug.value}:{first.day.isoformat()}",
        f"{first.drug.value} started {first.day}; the last dose or refill ({last.day}) covered until {next_due}.",
    ), None


def evaluate(facts: Iterable[Fact], today: date, config: AlertConfig | None = None) -> Evaluation:
    """Which alerts fire for a patient today.

    Args:
        facts: the patient's facts (entered-in-error resources gave none).
        today: the evaluation date in the service's time zone.
        config: thresholds; the documented defaults when None.

    Returns:
        The findings, and the next date on which time alone could change them (None when it cannot).
    """
    config = config or AlertConfig()
    known = [f for f in facts if f.effective_date is None or f.effective_date <= today]
    events = [e for e in events_of(known) if e.day <= today]
    findings: list[AlertFinding] = []
    next_dates: list[date] = []

    def collect(result: tuple[AlertFinding | None, date | None]) -> None:
        finding, next_date = result
        if finding is not None:
            findings.append(finding)
        if next_date is not None and next_date > today:
            next_dates.append(next_date)

    collect(_denosumab(events, today, config))
    episode = index_episode(known, today, config.episode_days)
    if episode is not None:
        collect(_bmd_gap(known, episode, today, config))
        collect(_treatment_gap(events, episode, today, config))
        collect(_adherence(events, episode, today, config))
    return Evaluation(tuple(findings), min(next_dates) if next_dates else None)
