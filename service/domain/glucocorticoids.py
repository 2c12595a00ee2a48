"""Systemic glucocorticoid exposure as fracture-risk tools define it: 3 months or more at 5 mg/day or more of
prednisolone (or its equivalent), or a coded long-term use (ICD-10-CM Z79.52).

FRAX: "oral glucocorticoids for more than 3 months at a dose of prednisolone of 5 mg daily or more (or equivalent
doses of other glucocorticoids)". One perioperative dose, an epidural or intra-articular injection, an inhaler or a
cream is not that exposure and does not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from service.domain.drugs import Drug
from service.domain.medication_timeline import MedicationEvent

__all__ = ["MIN_DAILY_MG", "MIN_DAYS", "SteroidExposure", "prednisolone_mg_per_day", "systemic_exposure"]

MIN_DAILY_MG: Final = 5.0  # prednisolone-equivalent mg/day (FRAX)
MIN_DAYS: Final = 90  # 3 months (FRAX)
# mg of each drug equivalent in anti-inflammatory effect to 1 mg of prednisolone (BNF, 'Equivalent
# anti-inflammatory doses of corticosteroids': prednisolone 5 mg = cortisone acetate 25 mg = deflazacort 6 mg =
# dexamethasone 750 micrograms = hydrocortisone 20 mg = methylprednisolone 4 mg; prednisone as prednisolone).
_PER_PREDNISOLONE_MG: Final[dict[str, float]] = {
    "prednisolone": 1.0,
    "prednisone": 1.0,
    "methylprednisolone": 0.8,
    "dexamethasone": 0.15,
    "hydrocortisone": 4.0,
    "cortisone": 5.0,
    "deflazacort": 1.2,
}
# Routes that act locally: their glucocorticoid is not the systemic exposure the factor is about.
_LOCAL_ROUTE: Final = re.compile(
    r"epidur|intra-?articul|intra-?lesion|intra-?derm|intra-?vitre|intra-?thec|perineur|periartic|inhal|nebul|"
    r"topical|cutaneous|transderm|nasal|ophthalm|\beye\b|\bear\b|otic|rectal|enema|vagin|dental|oromucos|"
    r"infiltrat|injection into joint|joint injection",
    re.IGNORECASE,
)
_SINGLE_DAY: Final = frozenset({"administration"})
_DEFAULT_DAYS: Final = 30  # a dispense or order that states no supply: one month


@dataclass(frozen=True, slots=True)
class SteroidExposure:
    """Whether the exposure is established (True), ruled out by the record (False) or open (None: a long
    systemic course whose dose is not stated), with the events behind it."""

    value: bool | None
    events: tuple[MedicationEvent, ...]
    detail: str


def prednisolone_mg_per_day(event: MedicationEvent) -> float | None:
    """The event's daily dose in prednisolone-equivalent mg, or None when the dose or the drug is not known."""
    factor = _PER_PREDNISOLONE_MG.get(event.ingredient or "")
    if factor is None or event.dose_mg is None:
        return None
    per_day = 1.0 / event.interval_days if event.interval_days else 1.0
    return event.dose_mg * per_day / factor


def _span(event: MedicationEvent, until: date) -> tuple[date, date] | None:
    """The days an event covers (inclusive), cut at ``until``; None for events that prove no use."""
    if event.event in _SINGLE_DAY:
        return (event.day, event.day) if event.proves_dose else None
    if event.event == "dispense":
        if not event.proves_dose:
            return None
        days = event.days_supply or ((event.quantity or 0) * (event.interval_days or 0)) or _DEFAULT_DAYS
        end = event.day + timedelta(days=max(int(days) - 1, 0))
    elif event.event == "statement":
        if event.status in ("active", "intended"):
            end = event.end_day or event.date_asserted or until
        elif event.status in ("completed", "stopped"):
            end = event.end_day or event.day
        else:
            return None
    elif event.is_order and event.status in ("active", "completed"):
        end = event.end_day or event.day + timedelta(days=max(int(event.days_supply or _DEFAULT_DAYS) - 1, 0))
    else:
        return None
    end = min(end, until)
    return (event.day, end) if end >= event.day else None


def _days(spans: Sequence[tuple[date, date]], start: date) -> int:
    """Days covered by the union of the spans, from ``start`` on."""
    total = 0
    reached = start - timedelta(days=1)  # the last day already counted
    for begin, last in sorted(spans):
        first = max(begin, reached + timedelta(days=1))
        if last >= first:
            total += (last - first).days + 1
            reached = last
    return total


def systemic_exposure(
    events: Sequence[MedicationEvent], coded_long_term: bool, window_start: date, until: date
) -> SteroidExposure:
    """Systemic glucocorticoid exposure between ``window_start`` and ``until``.

    Args:
        events: the medication timeline (only glucocorticoids are read).
        coded_long_term: the record holds ICD-10-CM Z79.52 (long-term use of systemic steroids).
        window_start: the first day that counts (a year before the index operation).
        until: the last day that counts (the assessment day).
    """
    steroids = [
        e for e in events if e.drug is Drug.GLUCOCORTICOID and e.day <= until and not _LOCAL_ROUTE.search(e.route or "")
    ]
    if coded_long_term:
        return SteroidExposure(True, tuple(steroids), "long-term systemic use coded")
    spans: list[tuple[tuple[date, date], MedicationEvent, float | None]] = []
    for event in steroids:
        span = _span(event, until)
        if span is not None and span[1] >= window_start:
            spans.append((span, event, prednisolone_mg_per_day(event)))
    enough = [(s, e) for s, e, mg in spans if mg is not None and mg >= MIN_DAILY_MG - 1e-9]
    if _days([s for s, _ in enough], window_start) >= MIN_DAYS:
        return SteroidExposure(True, tuple(e for _, e in enough), "3 months or more at 5 mg/day or more")
    unknown = [(s, e) for s, e, mg in spans if mg is None]
    if _days([s for s, _ in [*enough, *unknown]], window_start) >= MIN_DAYS:
        return SteroidExposure(None, tuple(e for _, e in unknown), "3 months or more, dose not stated")
    return SteroidExposure(False, (), "no systemic course of 3 months at 5 mg/day")
