"""The development dataset for local recalibration: each patient's prediction at the index operation and whether a
new vertebral fracture followed within the horizon (pure; the data cut-off is passed in).

Index: the patient's first completed augmentation on record. Prediction: the literature model on the features as
of the landmark, LANDMARK_DAYS after the index — the operation's own measures (cement, leakage, post-operative CT)
are part of what the model describes, and the care team has them by then. Only facts *dated* by the landmark are
used, and no augmentation after the index day: in data loaded in bulk every fact was *recorded* at load time, so
the recorded time cannot tell what was known then. The coverage of the record (which resource types it holds)
is taken as it is now.

Outcome (within HORIZON_DAYS after the index day): an incident vertebral fracture, by its onset after the index day
(at any level: the model predicts new *or recurrent* fractures), or a new augmentation that treats a level the index
did not (a new fracture treated without a coded diagnosis). A fracture's date is its onset only: a diagnosis without
onset is dated by the visit that recorded it, not by the fracture, and is not counted (the normaliser leaves it
undated). Subsequent-encounter and sequela codes (ICD-10-CM 7th character D/G/K/P/S, e.g. M80.08XD) describe a
known fracture's follow-up, not a new one, and are not counted either. A repeat augmentation of the same levels alone
does not count: it may be staged or complementary treatment of the index fracture. An augmentation for malignancy
is outside the model's scope: such patients are left out ("malignancy").

Censoring: a patient whose 2-year window has not closed by the data cut-off is left out *whether or not* an event
was seen — keeping their early events while dropping their event-free follow-up would inflate the observed risk.
A patient who died within the window without an event is left out too (death competes with the outcome; the
hospital cannot see fractures after death). Patients who moved away look event-free: the record cannot tell.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from service.domain.facts import Fact, FactKind
from service.domain.features import build_features
from service.domain.risk_model import estimate

__all__ = ["HORIZON_DAYS", "LANDMARK_DAYS", "DevelopmentCase", "development_case", "split_held_out"]

HORIZON_DAYS: Final = 730  # 2 years (risk_parameters.HORIZON_YEARS)
LANDMARK_DAYS: Final = 7  # the operation's measures are dated up to a week after it (features._OPERATION_WINDOW)
_NOT_INCIDENT: Final = frozenset({"subsequent", "sequela"})  # ICD-10-CM 7th character (normalise._encounter)


@dataclass(frozen=True, slots=True)
class DevelopmentCase:
    """One patient in the development dataset."""

    patient_id: str
    index_day: date
    log_odds: float  # the literature model's log-odds at the landmark
    event: bool
    event_day: date | None
    event_kind: str | None  # "fracture" | "augmentation"


def _levels(fact: Fact) -> set[str]:
    levels = fact.attrs.get("levels")
    return {str(x) for x in levels} if isinstance(levels, list) else set()


def _completed_augmentations(facts: Iterable[Fact]) -> list[Fact]:
    return [
        f
        for f in facts
        if f.kind is FactKind.VERTEBRAL_AUGMENTATION and f.status == "completed" and f.effective_date is not None
    ]


def development_case(
    patient_id: str, facts: Sequence[Fact], coverage: Iterable[str], cutoff: date
) -> DevelopmentCase | str:
    """One patient's prediction and outcome, or why the patient is left out.

    Args:
        patient_id: the EHR's Patient id.
        facts: every stored fact of the patient.
        coverage: the resource types the record holds.
        cutoff: the last day the data can speak for (today, for data loaded up to now).

    Returns:
        The case, or the reason it is left out: "no augmentation", "window open" (follow-up under 2 years),
        "died" (death within the window, no event before it), "malignancy" (out of the model's scope) or "no index"
        (the model does not apply).
    """
    operations = _completed_augmentations(facts)
    if not operations:
        return "no augmentation"
    index_day = min(f.effective_date for f in operations if f.effective_date)
    if index_day + timedelta(days=HORIZON_DAYS) > cutoff:
        return "window open"
    index_levels = {lvl for f in operations if f.effective_date == index_day for lvl in _levels(f)}
    end = index_day + timedelta(days=HORIZON_DAYS)
    events: list[tuple[date, str]] = []
    for fact in facts:
        day = fact.effective_date
        if day is None or not index_day < day <= end:
            continue
        if fact.kind is FactKind.VERTEBRAL_FRACTURE:
            if fact.attrs.get("encounter") in _NOT_INCIDENT:
                continue  # the follow-up of a known fracture, not a new one
            events.append((day, "fracture"))
        elif (
            fact.kind is FactKind.VERTEBRAL_AUGMENTATION
            and fact.status == "completed"
            and (not index_levels or not _levels(fact) or _levels(fact) - index_levels)
        ):
            events.append((day, "augmentation"))
    first = min(events) if events else None
    died = [f.effective_date for f in facts if f.kind is FactKind.DECEASED]
    if first is None and any(d is None or d <= end for d in died):
        return "died"
    landmark = index_day + timedelta(days=LANDMARK_DAYS)
    then = [
        # Recorded time dropped on purpose: see the module's docstring.
        dataclasses.replace(f, recorded_at=None)
        for f in facts
        if (f.effective_date is None or f.effective_date <= landmark)
        and not (f.kind is FactKind.VERTEBRAL_AUGMENTATION and f.effective_date and f.effective_date > index_day)
    ]
    features = build_features(then, coverage, datetime.combine(landmark, time(23, 59), tzinfo=UTC))
    if features.index is None:
        return features.excluded or "no index"
    # The model's log-odds before its floor and ceiling: the linear predictor a recalibration maps.
    log_odds = estimate(features.inputs).log_odds
    return DevelopmentCase(
        patient_id,
        index_day,
        log_odds,
        first is not None,
        first[0] if first else None,
        first[1] if first else None,
    )


def split_held_out(cases: Sequence[DevelopmentCase], share: float, seed: int) -> tuple[list[int], list[int]]:
    """Positions of the cases to fit on and to hold out: ``share`` of the events and of the non-events each
    (stratified), chosen by a seeded hash of the patient id, so the same seed and patients give the same split.

    Returns:
        (fit positions, held-out positions), each in the order of ``cases``.
    """
    held: set[int] = set()
    for stratum in (True, False):
        members = [i for i, c in enumerate(cases) if c.event is stratum]
        members.sort(key=lambda i: hashlib.sha256(f"{seed}|{cases[i].patient_id}".encode()).hexdigest())
        held.update(members[: round(len(members) * share)])
    return [i for i in range(len(cases)) if i not in held], sorted(held)
