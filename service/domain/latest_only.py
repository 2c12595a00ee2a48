"""What the assessment and the alert evaluation need of a patient's measurement series, and so what the read of
their facts may leave out without changing their answers.

Why: the worker read and walked a patient's whole record on every change, so a patient with a long lab series
(20,000 eGFR Observations) cost 230-440 ms per change against 7-17 ms for a typical patient (issue 15, item 3).

- EGFR, a lab series a patient may hold by the thousand, is used only as its latest dated value: by features._kidney
  (recorded and dated by the assessment moment) and safety.renal_check (dated by the hospital's today and no more
  than a year old; the recording time not looked at), ties on the day broken by source. The read keeps the series
  from its latest day (``for_assessment``).
- CREATININE, HBA1C, VITAMIN_D, CALCIUM, BODY_WEIGHT, BODY_HEIGHT, BMI (vital signs come with every visit) and
  DXA_Z_SCORE are stored for the patient page but used by neither: not read at all. Naming one of them outside the
  FHIR mapping fails tests/unit/test_latest_only.py, so that a new consumer moves it out of UNREAD_KINDS.
- SARCOPENIA_FINDING, PARASPINAL_FAT_FRACTION and P1NP_CTX_RATIO are also used only as their latest value, but they
  are single findings of a scan or a report, not series: read whole. Each cut kind costs two index probes per
  patient (the latest day, the range from it), which for a batch of typical patients is more than reading the odd
  value (with 12 cut kinds, a 500-patient batch's read took 59 ms against 25 ms for the whole records).
- Read whole because their consumers need more than the latest value: P1NP and BETA_CTX (paired by the day they were
  drawn, features._shown_only; P1NP's latest is the latest non-zero one), DXA_T_SCORE and DXA_BMD (the lowest in a
  window before the operation; any in a window, alert_rules._bmd_gap), VERTEBRAL_HU (a series around the
  operation), COBB_ANGLE (the latest coronal one: a filter on attrs), VERTEBRAL_COMPRESSION_RATIO (the latest before
  the operation's day), the operation's measures (a window after it), and every Condition, Procedure, medication
  and demographic fact. index_episode looks at every fact's "osteoporotic" attribute, which only fracture codes
  carry (fhir/terminology.py), never a measurement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from service.domain.facts import Fact, FactKind

__all__ = ["LATEST_ONLY_KINDS", "UNREAD_KINDS", "AsOf", "for_assessment"]

LATEST_ONLY_KINDS: Final = frozenset({FactKind.EGFR})
UNREAD_KINDS: Final = frozenset(
    {
        FactKind.CREATININE,
        FactKind.HBA1C,
        FactKind.VITAMIN_D,
        FactKind.CALCIUM,
        FactKind.BODY_WEIGHT,
        FactKind.BODY_HEIGHT,
        FactKind.BMI,
        FactKind.DXA_Z_SCORE,
    }
)


@dataclass(frozen=True, slots=True)
class AsOf:
    """The moment facts are read for, and the days their consumers count "as of": the assessment counts in the
    moment's own date, the alert rules in the hospital's time zone, which may be a day either side of it."""

    moment: datetime
    first_day: date
    last_day: date

    @classmethod
    def at(cls, moment: datetime, *days: date) -> AsOf:
        """As of ``moment``, for consumers counting in its date and in each of ``days``."""
        every = (moment.date(), *days)
        return cls(moment, min(every), max(every))


def for_assessment(facts: Iterable[Fact], as_of: AsOf) -> list[Fact]:
    """The facts the assessment and the alert evaluation as of a moment need, in their order: none of the unread
    kinds, and the latest-only kinds' series cut to what their consumers can still pick.

    Per latest-only kind, let D be the latest effective date on or before ``first_day`` among the kind's facts with a
    value and recorded by the moment. Kept: every fact of the kinds read whole; of the kind, every undated fact and
    every fact dated from D to ``last_day`` (all of them up to it when there is no D). Why that is enough: each
    consumer picks the latest fact with a value dated on or before its own day X (first_day <= X <= last_day),
    maybe only among those recorded by the moment, maybe only among those dated after some earlier day. The fact
    that made D qualifies for every one of them, so the answer is dated D or later, and no later than X: all kept,
    ties on a day included (the tie-break by source sees the same facts). What is left out is dated before D or
    after ``last_day``: no consumer of these kinds can pick it.

    The PostgreSQL read (adapters/postgres/queries.sql, facts_for_assessment) selects the same rows; this is its
    statement in the domain, for the in-memory store and the tests.
    """
    facts = list(facts)
    latest: dict[FactKind, date] = {}
    for fact in facts:
        day = fact.effective_date
        if (
            fact.kind in LATEST_ONLY_KINDS
            and fact.value_num is not None
            and day is not None
            and day <= as_of.first_day
            and (fact.recorded_at is None or fact.recorded_at <= as_of.moment)
            and day > latest.get(fact.kind, date.min)
        ):
            latest[fact.kind] = day
    return [
        f
        for f in facts
        if f.kind not in UNREAD_KINDS
        and (
            f.kind not in LATEST_ONLY_KINDS
            or f.effective_date is None
            or latest.get(f.kind, date.min) <= f.effective_date <= as_of.last_day
        )
    ]
