"""The FLS quality measures on synthetic timelines whose numerators and denominators are known (docs/measures.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from service.domain.facts import Fact, FactKind
from service.domain.fls_measures import (
    MEASURES,
    AlertRecord,
    DenosumabDose,
    DoseOutcome,
    IndexCase,
    MeasureId,
    Period,
    combine,
    denosumab_doses,
    index_cases,
    months,
    populations,
    summarise,
)

JANUARY = Period(date(2025, 1, 1), date(2025, 1, 31))
AS_OF = date(2026, 6, 1)  # every window of a January 2025 fracture has closed
INDEX = date(2025, 1, 10)


def on(days: int) -> date:
    return INDEX + timedelta(days=days)


def born(year: int = 1950) -> Fact:
    return Fact(FactKind.BIRTH_DATE, effective_date=date(year, 5, 1))


def pkp(day: date = INDEX) -> Fact:
    return Fact(FactKind.VERTEBRAL_AUGMENTATION, effective_date=day, status="completed", source="Procedure/pkp")


def dxa(day: date) -> Fact:
    return Fact(FactKind.DXA_T_SCORE, value_num=-2.7, effective_date=day, source="Observation/dxa")


def med(drug: str, day: date, event: str = "administration", status: str = "completed", **attrs: Any) -> Fact:
    return Fact(FactKind.MEDICATION, effective_date=day, status=status, attrs={"drug": drug, "event": event, **attrs})


def cases(facts: list[Fact], as_of: date = AS_OF, **kw: Any) -> list[IndexCase]:
    return index_cases("p", "north", facts, JANUARY, as_of, **kw)


def test_eligibility_is_the_alert_rules() -> None:
    assert [c.index_day for c in cases([born(), pkp()])] == [INDEX]
    assert cases([born(1990), pkp()]) == []  # under 50
    assert cases([born(), pkp(), Fact(FactKind.MALIGNANCY, attrs={"type": "myeloma"})]) == []
    traumatic = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=INDEX, attrs={"traumatic": True})
    assert cases([born(), traumatic]) == []
    assert cases([born(), pkp(date(2025, 2, 1))]) == []  # outside the period
    # The fracture's onset starts the episode, not its later operation.
    onset = Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=date(2024, 12, 20))
    assert cases([born(), onset, pkp()]) == []


def test_two_episodes_in_a_long_period() -> None:
    year = Period(date(2023, 1, 1), date(2025, 12, 31))
    found = index_cases("p", "s", [born(), pkp(date(2023, 3, 1)), pkp(INDEX)], year, AS_OF)
    assert sorted(c.index_day for c in found) == [date(2023, 3, 1), INDEX]


def test_case_facts() -> None:
    (case,) = cases([born(), pkp(), dxa(on(-400)), dxa(on(30)), med("alendronate", on(20), "dispense")])
    assert case.dxa_day == on(-400)  # within the 2-year look-back
    assert case.treated_day == on(20)
    assert case.adherent is False  # 90 days' supply from day 20, nothing since: not covered on day 365
    (active,) = cases([born(), pkp(), med("denosumab-60mg", on(-30))])
    assert active.treated_day == INDEX  # active at the index: day 0
    (early,) = cases([born(), pkp(), med("denosumab-60mg", on(10))], as_of=on(200))
    assert early.adherent is None  # day 365 not reached


# Ten patients identified in January 2025 (and one in February), each with a known outcome.
COHORT: dict[str, list[Fact]] = {
    "a": [born(), pkp(), dxa(on(30)), med("zoledronic-acid-5mg", on(40))],  # dxa, treated 40, adherent (yearly)
    "b": [born(), pkp(), dxa(on(84)), med("alendronate", on(100), "dispense", days_supply=365)],  # dxa 84, tx 100
    "c": [born(), pkp(), dxa(on(85)), med("alendronate", on(113), "dispense", days_supply=365)],  # both late
    "d": [born(), pkp()],  # nothing
    "e": [born(), pkp(), Fact(FactKind.DECEASED, effective_date=on(50))],  # died in every window: excluded
    "f": [born(), pkp()],  # DXA gap dismissed with a reason
    "g": [born(), pkp(), med("denosumab-60mg", on(10)), med("denosumab-60mg", on(200))],  # tx 10, on time at 365
    "h": [born(), pkp(), med("denosumab-60mg", on(10))],  # tx 10, stopped: not adherent
    "i": [born(), pkp(), med("raloxifene", on(0), "statement", status="active")],  # tx 0, active statement
    "j": [born(1980), pkp()],  # under 50: not identified
    "k": [born(), pkp(date(2025, 2, 3))],  # February
}


def cohort_cases(period: Period = JANUARY, as_of: date = AS_OF) -> list[IndexCase]:
    out: list[IndexCase] = []
    for pid, facts in COHORT.items():
        reasons = {INDEX} if pid == "f" else set()
        out += index_cases(pid, "north" if pid < "f" else "south", facts, period, as_of, dxa_reasons=reasons)
    return out


def test_the_cohort_gives_the_documented_counts() -> None:
    found = cohort_cases()
    assert sorted(c.patient_id for c in found) == list("abcdefghi")
    s = {m: summarise(m, found, [], [], AS_OF) for m in MeasureId}
    assert s[MeasureId.IDENTIFIED].initial == 9
    dxa_12w = s[MeasureId.DXA_12W]  # a, b, f (reason); e excluded (died day 50); c late
    assert (dxa_12w.initial, dxa_12w.denominator, dxa_12w.exclusions, dxa_12w.numerator) == (9, 9, 1, 3)
    assert dxa_12w.score == pytest.approx(3 / 8)
    tx = s[MeasureId.TREATMENT_16W]  # a, b, g, h, i; c at 113 is late; e excluded
    assert (tx.initial, tx.denominator, tx.exclusions, tx.numerator, tx.pending) == (9, 9, 1, 5, 0)
    adherence = s[MeasureId.ADHERENCE_52W]  # treated: a b c g h i; adherent: a b c g i (h stopped)
    assert (adherence.initial, adherence.denominator, adherence.exclusions, adherence.numerator) == (6, 6, 0, 5)
    median = s[MeasureId.TIME_TO_TREATMENT]  # 40, 100, 113, 10, 10, 0 -> median 25
    assert (median.initial, median.denominator, median.score) == (9, 6, 25.0)


def test_the_drill_down_lists_the_patients_behind_the_counts() -> None:
    found = cohort_cases()
    dxa = populations(MeasureId.DXA_12W, found, [], [], AS_OF)
    assert dxa == {
        "initial-population": list("abcdefghi"),
        "denominator": list("abcdefghi"),
        "denominator-exclusion": ["e"],
        "numerator": ["a", "b", "f"],
    }
    adherence = populations(MeasureId.ADHERENCE_52W, found, [], [], AS_OF)
    assert adherence["numerator"] == ["a", "b", "c", "g", "i"]
    assert populations(MeasureId.TIME_TO_TREATMENT, found, [], [], AS_OF)["measure-population"] == list("abcghi")
    for measure in MeasureId:  # the lists agree with the counts wherever each member is one patient
        counted = summarise(measure, found, [], [], AS_OF)
        assert len(populations(measure, found, [], [], AS_OF)["initial-population"]) == counted.initial


def test_windows_still_open_are_pending() -> None:
    early = on(90)  # DXA window closed, treatment window open, day 365 far off
    found = cohort_cases(as_of=early)
    dxa_12w = summarise(MeasureId.DXA_12W, found, [], [], early)
    assert (dxa_12w.denominator, dxa_12w.numerator, dxa_12w.pending) == (9, 3, 0)
    tx = summarise(MeasureId.TREATMENT_16W, found, [], [], early)
    # met so far: a (40), g, h (10), i (0); e died; b, c, d, f still in their window
    assert (tx.initial, tx.denominator, tx.exclusions, tx.numerator, tx.pending) == (9, 5, 1, 4, 4)
    assert summarise(MeasureId.ADHERENCE_52W, found, [], [], early).denominator == 0


def test_sites_and_months_are_subsets() -> None:
    year = Period(date(2025, 1, 1), date(2025, 12, 31))
    found = cohort_cases(year)
    by_month = {m.start.month: [c for c in found if m.holds(c.index_day)] for m in months(year)}
    assert len(months(year)) == 12
    assert months(year)[1] == Period(date(2025, 2, 1), date(2025, 2, 28))
    assert [c.patient_id for c in by_month[2]] == ["k"]
    north = [c for c in by_month[1] if c.site == "north"]
    assert summarise(MeasureId.IDENTIFIED, north, [], [], AS_OF).initial == 5


def dose_outcomes(*days: int, follow_on: int | None = None, as_of: date = date(2027, 6, 1)) -> list[DoseOutcome]:
    facts = [born(), *(med("denosumab-60mg", on(d)) for d in days)]
    if follow_on is not None:
        facts.append(med("zoledronic-acid-5mg", on(follow_on)))
    period = Period(date(2000, 1, 1), date(2100, 1, 1))
    return [d.outcome for d in denosumab_doses("p", "s", facts, period, as_of)]


@pytest.mark.parametrize(
    ("days", "follow_on", "expected"),
    [
        ((0, 183), None, ["on-time", "stopped"]),
        ((0, 213), None, ["on-time", "stopped"]),
        ((0, 214), None, ["late", "stopped"]),
        ((0, 295), None, ["late", "stopped"]),
        ((0, 296), None, ["stopped", "stopped"]),
        ((0,), 200, ["switched"]),
        ((0,), 300, ["stopped"]),
    ],
)
def test_denosumab_dose_outcomes(days: tuple[int, ...], follow_on: int | None, expected: list[str]) -> None:
    assert [o.value for o in dose_outcomes(*days, follow_on=follow_on)] == expected


def test_denosumab_pending_and_due_month() -> None:
    assert dose_outcomes(0, as_of=on(250)) == [DoseOutcome.PENDING]
    assert dose_outcomes(0, as_of=on(300)) == [DoseOutcome.STOPPED]
    facts = [med("denosumab-60mg", on(0)), med("denosumab-60mg", on(190))]
    due = Period(on(183), on(183))
    assert [d.dose_day for d in denosumab_doses("p", "s", facts, due, AS_OF)] == [on(0)]
    # 120 mg (oncology) is not the osteoporosis product
    assert denosumab_doses("p", "s", [med("denosumab-120mg", on(0))], due, AS_OF) == []


def test_denosumab_measures_share_a_denominator() -> None:
    def dose(outcome: DoseOutcome, died: date | None = None) -> DenosumabDose:
        return DenosumabDose("p", "s", INDEX, on(183), outcome, died)

    doses = [
        dose(DoseOutcome.ON_TIME),
        dose(DoseOutcome.ON_TIME),
        dose(DoseOutcome.LATE),
        dose(DoseOutcome.STOPPED),
        dose(DoseOutcome.SWITCHED),
        dose(DoseOutcome.PENDING),
        dose(DoseOutcome.PENDING, died=on(100)),
    ]
    on_time = summarise(MeasureId.DENOSUMAB_ON_TIME, [], doses, [], AS_OF)
    assert (on_time.initial, on_time.denominator, on_time.exclusions, on_time.numerator, on_time.pending) == (
        7,
        6,
        1,
        2,
        1,
    )
    assert on_time.score == pytest.approx(2 / 5)
    assert summarise(MeasureId.DENOSUMAB_LATE, [], doses, [], AS_OF).numerator == 1
    assert summarise(MeasureId.DENOSUMAB_STOPPED, [], doses, [], AS_OF).numerator == 1


def test_alert_measures() -> None:
    t0 = datetime(2025, 1, 5, 8, tzinfo=UTC)

    def alert(action_h: float | None, resolved_h: float | None) -> AlertRecord:
        def at(h: float | None) -> datetime | None:
            return None if h is None else t0 + timedelta(hours=h)

        return AlertRecord("p", "s", "treatment-gap", t0.date(), t0, at(action_h), at(resolved_h))

    alerts = [alert(2, None), alert(10, 50), alert(30, None), alert(None, 5), alert(None, None)]
    assert summarise(MeasureId.ALERTS_OPENED, [], [], alerts, AS_OF).initial == 5
    acted = summarise(MeasureId.ALERTS_ACTED_ON, [], [], alerts, AS_OF)
    assert (acted.denominator, acted.exclusions, acted.numerator) == (5, 1, 3)
    assert acted.score == pytest.approx(3 / 4)
    resolved = summarise(MeasureId.ALERTS_RESOLVED, [], [], alerts, AS_OF)
    assert (resolved.denominator, resolved.numerator) == (5, 2)
    waited = summarise(MeasureId.ALERTS_TIME_TO_ACTION, [], [], alerts, AS_OF)
    assert (waited.initial, waited.denominator, waited.score) == (5, 3, 10.0)


def test_every_site_together_is_the_sum_of_the_sites() -> None:
    found = cohort_cases()
    for measure in (MeasureId.DXA_12W, MeasureId.TREATMENT_16W, MeasureId.TIME_TO_TREATMENT):
        whole = summarise(measure, found, [], [], AS_OF)
        parts = [summarise(measure, [c for c in found if c.site == s], [], [], AS_OF) for s in ("north", "south")]
        assert combine(measure, parts) == whole
    t0 = datetime(2025, 1, 5, 8, tzinfo=UTC)
    alerts = [AlertRecord("p", s, "x", t0.date(), t0, t0 + timedelta(hours=h), None) for s, h in (("a", 1), ("b", 3))]
    by_site = [summarise(MeasureId.ALERTS_TIME_TO_ACTION, [], [], [a], AS_OF) for a in alerts]
    assert combine(MeasureId.ALERTS_TIME_TO_ACTION, by_site).score == 2.0


def test_every_measure_is_defined() -> None:
    assert set(MEASURES) == set(MeasureId)
    for definition in MEASURES.values():
        assert definition.source
        assert definition.initial
        assert (definition.scoring == "proportion") == bool(definition.numerator)
        assert (definition.scoring == "continuous-variable") == bool(definition.unit)


def test_the_documentation_defines_every_measure() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "measures.md").read_text(encoding="utf-8")
    for measure in MeasureId:
        assert f"| `{measure.value}` |" in text, measure
