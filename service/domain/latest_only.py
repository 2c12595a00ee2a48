"""Measurement series of which the assessment and the alert evaluation use only the latest value, and the part of
such a series a read may leave out without changing their answer.

Why: the worker read and walked a patient's whole record on every change, so a patient with a long lab series
(20,000 eGFR Observations) cost 230-440 ms per change against 7-17 ms for a typical patient (issue 15, item 3). Every
consumer of the kinds below takes one fact of the series: the latest dated one with a value, as of a day, ties on
that day broken by source:

- EGFR: features._kidney (recorded and dated by the assessment moment) and safety.renal_check (dated by the
  hospital's today and no more than a year old; the recording time not looked at);
- SARCOPENIA_FINDING, PARASPINAL_FAT_FRACTION, P1NP_CTX_RATIO: features (recorded and dated by the moment);
- CREATININE, HBA1C, VITAMIN_D, CALCIUM, BODY_WEIGHT, BODY_HEIGHT, BMI, DXA_Z_SCORE: stored, not used by either
  yet. A consumer that needs more of a kind than its latest value must take the kind out of this list.

Not here, and read whole: P1NP and BETA_CTX (paired by the day they were drawn, features._shown_only; P1NP's latest
is the latest with a non-zero value), DXA_T_SCORE and DXA_BMD (the lowest in a window before the operation; any in
the window, alert_rules._bmd_gap), VERTEBRAL_HU (a series around the operation), COBB_ANGLE (the latest coronal one:
a filter on attrs), VERTEBRAL_COMPRESSION_RATIO (the latest before the operation's day, not before today), the
operation's measures (a window after it), and every Condition, Procedure and medication. index_episode looks at
every fact's "osteoporotic" attribute, which only fracture codes carry (fhir/terminology.py), never a measurement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from service.domain.facts import Fact, FactKind

__all__ = ["LATEST_ONLY_KINDS", "AsOf", "latest_only"]

LATEST_ONLY_KINDS: Final = frozenset(
    {
        FactKind.EGFR,
        FactKind.SARCOPENIA_FINDING,
        FactKind.PARASPINAL_FAT_FRACTION,
        FactKind.P1NP_CTX_RATIO,
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


def latest_only(facts: Iterable[Fact], as_of: AsOf) -> list[Fact]:
    """The facts with the latest-only kinds' series cut to what their consumers can still pick, in their order.

    Per latest-only kind, let D be the latest effective date on or before ``first_day`` among the kind's facts with a
    value and recorded by the moment. Kept: every fact of other kinds; of the kind, every undated fact and every fact
    dated from D to ``last_day`` (all of them from the first one on when there is no D). Why that is enough: each
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
        if f.kind not in LATEST_ONLY_KINDS
        or f.effective_date is None
        or latest.get(f.kind, date.min) <= f.effective_date <= as_of.last_day
    ]
