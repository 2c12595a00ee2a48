"""The alert rules of docs/sources/alerts.md, as pure functions of (facts, today, thresholds).

Days are counted between calendar dates as the EHR wrote them. Every threshold is configuration with the documented
default. Each finding names the resources that made it fire, its due date, and an episode key (what it is about:
the last denosumab dose, the index fracture), so a dismissed alert stays dismissed until the episode changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from service.domain.alert_types import ALERT_TYPES, AlertType
from service.domain.drugs import Drug
from service.domain.exposure import (
    ONCOLOGY_ANTIRESORPTIVES,
    ExposureRules,
    covered_until,
    denosumab_state,
    supply_days,
    treated_at,
    treatment_drugs,
)
from service.domain.facts import Fact, FactKind
from service.domain.medication_timeline import MedicationEvent, events_of

__all__ = [
    "EPISODE_FOLLOW_ON",
    "EPISODE_VERIFY",
    "AlertConfig",
    "AlertFinding",
    "Evaluation",
    "IndexEpisode",
    "evaluate",
    "index_episode",
    "resolution_of",
]


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """The thresholds, in days (docs/sources/alerts.md defaults; IOF Capture the Fracture KPIs for the gap rules)."""

    denosumab_due_days: int = 152  # 5 months: schedule the next dose (a local choice, no source)
    denosumab_interval_days: int = 183  # 60 mg every 6 months (label)
    denosumab_overdue_days: int = 213  # more than 6 months + 4 weeks: late (Lyu 2020's on-time window)
    denosumab_stopped_days: int = 295  # more than 16 weeks late: vertebral-fracture HR 3.91 (Lyu 2020)
    bmd_gap_days: int = 84  # DXA within 12 weeks of the fracture (IOF KPI)
    bmd_lookback_days: int = 730  # a DXA in the 2 years before the fracture counts
    treatment_gap_days: int = 112  # treatment within 16 weeks (IOF KPI)
    adherence_days: int = 365  # adherence checked at 52 weeks (IOF KPI)
    # A refill or dose counts as missed only this long after it was due: persistence studies of osteoporosis drugs
    # allow a 30-90 day refill gap (60 days is the common middle), and a yearly infusion a few weeks late is no
    # lapse (no adherence alert on day 366 after zoledronic acid).
    adherence_grace_days: int = 60
    episode_days: int = 365  # index events this close together are one fracture episode
    calcitonin_counts: bool = (
        False  # whether calcitonin closes the treatment gap: a site setting (docs/sources/alerts.md)
    )
    # Denosumab of unknown strength counts as the 60 mg osteoporosis product unless given monthly (oncology).
    denosumab_unknown_strength_counts: bool = True
    # An active order unrenewed for this long no longer counts as a course (exposure.ExposureRules).
    request_live_days: int = 365
    # Fracture-liaison services take patients from 50 (docs/sources/alerts.md, 'Index event': not patients under 50).
    minimum_age: int = 50

    def rules(self) -> ExposureRules:
        """The exposure rules with these thresholds."""
        return ExposureRules(
            denosumab_due_days=self.denosumab_due_days,
            denosumab_interval_days=self.denosumab_interval_days,
            denosumab_overdue_days=self.denosumab_overdue_days,
            denosumab_stopped_days=self.denosumab_stopped_days,
            request_live_days=self.request_live_days,
            calcitonin_counts=self.calcitonin_counts,
            denosumab_unknown_strength_counts=self.denosumab_unknown_strength_counts,
        )


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


# Episode keys of the denosumab alerts that ask something other than the dose (care_plan reads them).
EPISODE_VERIFY: Final = "denosumab-verify"  # taken by a statement, no injection date: verify it
EPISODE_FOLLOW_ON: Final = "denosumab-follow-on-ordered"  # a bisphosphonate is ordered: confirm it was given


def _priority(code: AlertType) -> str:
    return ALERT_TYPES[code].priority


def _sources(events: Iterable[MedicationEvent | Fact]) -> tuple[str, ...]:
    return tuple(sorted({e.source for e in events if e.source}))


def index_episode(
    facts: Iterable[Fact], today: date, episode_days: int = 365, minimum_age: int = 50
) -> IndexEpisode | None:
    """The latest fracture episode: a completed vertebral augmentation or a vertebral fracture Condition.

    Events within ``episode_days`` of the latest one belong to it; the episode starts at the earliest of them (the
    fracture's onset rather than its later operation, as the fracture-liaison standards count). Not an index event
    (docs/sources/alerts.md): anything in a record with a malignancy (myeloma, bone metastasis, a neoplastic
    pathological fracture), a traumatic fracture code without an osteoporosis code in the record (nor an augmentation
    whose only fracture codes are traumatic), and a patient under ``minimum_age`` at the episode's start. A fracture
    Condition without onset has no date and starts nothing.
    """
    facts = list(facts)
    if any(f.kind is FactKind.MALIGNANCY for f in facts):
        return None
    osteoporosis = any(
        f.kind is FactKind.OSTEOPOROSIS or (f.attrs.get("osteoporotic") is True and f.kind is not FactKind.MEDICATION)
        for f in facts
    )
    fractures = [f for f in facts if f.kind is FactKind.VERTEBRAL_FRACTURE]
    fragility = [f for f in fractures if osteoporosis or f.attrs.get("traumatic") is not True]
    traumatic_only = bool(fractures) and not fragility
    operations = [
        f for f in facts if f.kind is FactKind.VERTEBRAL_AUGMENTATION and f.status == "completed" and not traumatic_only
    ]
    events = [
        (fact.effective_date, fact)
        for fact in [*operations, *fragility]
        if fact.effective_date is not None and fact.effective_date <= today
    ]
    if not events:
        return None
    latest = max(day for day, _ in events)
    episode = [(day, fact) for day, fact in events if latest - day <= timedelta(days=episode_days)]
    first = min(day for day, _ in episode)
    born = max((f.effective_date for f in facts if f.kind is FactKind.BIRTH_DATE and f.effective_date), default=None)
    if born is not None and _years(born, first) < minimum_age:
        return None
    return IndexEpisode(first, _sources(fact for _, fact in episode))


def _years(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def _denosumab(
    events: Sequence[MedicationEvent], today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    state = denosumab_state(events, today, config.rules())
    if state.status in ("none", "switched", "on-time") or state.reference is None:
        return None, state.next_change
    code = {
        "due": AlertType.DENOSUMAB_DOSE_DUE,
        "verify": AlertType.DENOSUMAB_DOSE_DUE,
        "overdue": AlertType.DENOSUMAB_OVERDUE,
        "stopped": AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON,
    }[state.status]
    reference = state.reference
    due = reference + timedelta(days=config.denosumab_interval_days)
    known = f"last dose {reference}" if not state.undated else f"last known exposure {reference}, no injection date"
    ordered = state.follow_on_ordered
    if ordered is not None:
        # docs/sources/alerts.md: an active bisphosphonate order turns the alert into a routine "confirm it was given".
        stale = (covered_until(ordered, today, config.rules()) or ordered.day) + timedelta(days=1)
        return AlertFinding(
            code,
            "routine",
            max(due, ordered.day),
            _sources([*state.evidence, ordered]),
            f"{EPISODE_FOLLOW_ON}:{reference.isoformat()}",
            f"Denosumab 60 mg ({known}); {ordered.drug.value} ordered {ordered.day}: confirm the follow-on was given.",
        ), stale
    if state.status == "verify":
        return AlertFinding(
            code,
            "routine",
            # Ongoing with no date asserted, the reference is today: the statement's start keeps the due date stable.
            due if state.next_change is not None else state.evidence[-1].day,
            _sources(state.evidence),
            f"{EPISODE_VERIFY}:{state.evidence[-1].day.isoformat()}",
            f"Denosumab 60 mg taken by the record (statement from {state.evidence[-1].day}), but no injection date "
            "is known: verify the date of the last injection.",
        ), state.next_change
    if state.status == "stopped":
        # No day counts in the text: an unchanged record must give an unchanged alert, day after day.
        why = "the record says it was stopped" if state.stops else "more than 16 weeks late"
        return AlertFinding(
            code,
            _priority(code),
            due,
            _sources([*state.evidence, *state.stops]),
            f"denosumab-last-dose:{reference.isoformat()}",
            f"Denosumab 60 mg: {why} ({known}); no bisphosphonate follow-on since.",
        ), None
    words = "the next was due" if state.status == "overdue" else "schedule the next by"
    return AlertFinding(
        code,
        _priority(code),
        due,
        _sources(state.evidence),
        f"denosumab-last-dose:{reference.isoformat()}",
        f"Denosumab 60 mg: {known}; {words} {due}.",
    ), state.next_change


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


def _treatment_gap(
    events: Sequence[MedicationEvent], episode: IndexEpisode, today: date, config: AlertConfig
) -> tuple[AlertFinding | None, date | None]:
    if treated_at(events, episode.day, today, config.rules()):
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
    # Denosumab has its own, stricter timing rules; adherence here is about the other drugs. Oncology doses raise
    # no osteoporosis alert (docs/sources/alerts.md): their schedule is the oncologist's.
    drugs = treatment_drugs(config.rules()) - {Drug.DENOSUMAB_60, Drug.DENOSUMAB} - ONCOLOGY_ANTIRESORPTIVES
    started = [e for e in events if e.drug in drugs and e.starts_course and e.day >= episode.day]
    if not started:
        return None, None
    first = started[0]
    rules = config.rules()
    supplied = [e for e in events if e.drug in drugs and e.proves_dose and e.day >= first.day]
    if supplied:
        last, covered = max(
            ((e, covered_until(e, today, rules) or e.day) for e in supplied), key=lambda pair: (pair[1], pair[0].day)
        )
    else:
        last, covered = first, first.day + timedelta(days=supply_days(first))
    check_from = max(
        first.day + timedelta(days=config.adherence_days),
        covered + timedelta(days=config.adherence_grace_days + 1),
    )
    if today < check_from:
        return None, check_from
    return AlertFinding(
        AlertType.ADHERENCE_CHECK_DUE,
        _priority(AlertType.ADHERENCE_CHECK_DUE),
        check_from,
        _sources([first, last]),
        f"course:{first.drug.value}:{first.day.isoformat()}",
        f"{first.drug.value} started {first.day}; the last dose or refill ({last.day}) covered until {covered}.",
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
    episode = index_episode(known, today, config.episode_days, config.minimum_age)
    if episode is not None:
        collect(_bmd_gap(known, episode, today, config))
        collect(_treatment_gap(events, episode, today, config))
        collect(_adherence(events, episode, today, config))
    return Evaluation(tuple(findings), min(next_dates) if next_dates else None)


_DENOSUMAB_CODES: Final = frozenset(
    {AlertType.DENOSUMAB_DOSE_DUE, AlertType.DENOSUMAB_OVERDUE, AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}
)


def resolution_of(
    code: AlertType, facts: Iterable[Fact], today: date, config: AlertConfig | None = None
) -> tuple[str, str | None]:
    """What resolved an alert that no longer fires: ("evidence", None) when the record now holds what it asked for
    (a dose, a follow-on drug, a DXA, a refill), else ("not-applicable", why). Superseding is the caller's to tell
    (it sees the alert that replaced it)."""
    config = config or AlertConfig()
    known = [f for f in facts if f.effective_date is None or f.effective_date <= today]
    events = [e for e in events_of(known) if e.day <= today]
    if code in _DENOSUMAB_CODES:
        state = denosumab_state(events, today, config.rules())
        if state.status in ("on-time", "switched"):
            return "evidence", None
        if state.status == "none":
            return "not-applicable", "no longer applicable: no osteoporosis denosumab in the record"
        return "not-applicable", "no longer indicated by the record"
    episode = index_episode(known, today, config.episode_days, config.minimum_age)
    if episode is None:
        return "not-applicable", (
            "no longer applicable: no fracture in the record starts the fracture-liaison clock (malignancy, a "
            "traumatic fracture, age under 50, or a corrected record)"
        )
    if code is AlertType.TREATMENT_GAP and treated_at(events, episode.day, today, config.rules()):
        return "evidence", None
    if code is AlertType.BMD_ASSESSMENT_GAP and _bmd_gap(known, episode, today, config)[0] is None:
        return "evidence", None
    if code is AlertType.ADHERENCE_CHECK_DUE and _adherence(events, episode, today, config)[0] is None:
        return "evidence", None
    return "not-applicable", "no longer indicated by the record"
