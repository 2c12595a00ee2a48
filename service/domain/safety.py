"""Whether a bisphosphonate may be recommended: kidney function first (docs/sources/alerts.md, 'Safe recommendations').

A bisphosphonate is recommended only with an eGFR of 35 mL/min/1.73 m² or more measured in the last year and no
chronic kidney disease stage 4-5 in the record; otherwise the action is a specialist review of renal function.
Alendronate and zoledronic acid are not recommended below an eGFR of 35 (docs/sources/codes.md §4.1, renal cut-offs
from PMC8325650 Table 2; zoledronic acid label: contraindicated below a creatinine clearance of 35 mL/min).
Denosumab needs no renal adjustment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from service.domain.facts import Fact, FactKind

__all__ = ["MIN_EGFR", "RenalCheck", "renal_check"]

MIN_EGFR: Final = 35.0  # mL/min/1.73 m²
EGFR_MAX_AGE: Final = timedelta(days=365)
_INACTIVE: Final = frozenset({"inactive", "resolved", "remission"})
CALCIUM_VITAMIN_D: Final = "Check serum calcium and 25-OH vitamin D before starting"


@dataclass(frozen=True, slots=True)
class RenalCheck:
    """The answer and why, in words for the care plan."""

    bisphosphonate_ok: bool
    reason: str
    evidence: tuple[str, ...] = ()


def renal_check(facts: Iterable[Fact], today: date | None) -> RenalCheck:
    """Whether the record allows recommending a bisphosphonate today.

    Args:
        facts: the patient's facts (eGFR Observations, CKD Conditions).
        today: the day of the recommendation; None when unknown (then the latest eGFR counts whatever its age).
    """
    facts = list(facts)
    advanced = [
        f
        for f in facts
        if f.kind is FactKind.CHRONIC_KIDNEY_DISEASE
        and f.status not in _INACTIVE
        and int(f.attrs.get("stage", 0) or 0) >= 4
        and (today is None or f.effective_date is None or f.effective_date <= today)
    ]
    if advanced:
        sources = tuple(sorted({f.source for f in advanced if f.source}))
        return RenalCheck(False, "chronic kidney disease stage 4-5 in the record", sources)
    measured = [
        f
        for f in facts
        if f.kind is FactKind.EGFR
        and f.value_num is not None
        and f.effective_date is not None
        and (today is None or today - EGFR_MAX_AGE <= f.effective_date <= today)
    ]
    if not measured:
        return RenalCheck(False, "no eGFR in the last year")
    latest = max(measured, key=lambda f: (f.effective_date, f.source or ""))
    sources = (latest.source,) if latest.source else ()
    if (latest.value_num or 0.0) < MIN_EGFR:
        return RenalCheck(False, f"eGFR {latest.value_num:.0f} on {latest.effective_date} (below 35)", sources)
    return RenalCheck(True, f"eGFR {latest.value_num:.0f} on {latest.effective_date}", sources)
