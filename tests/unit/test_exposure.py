"""Exposure by docs/sources/alerts.md's rules: the full matrix of statuses x resource types x timings, one shared test
of "treated" for the alert rules and the risk model, and where denosumab stands."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from service.domain.alert_rules import EPISODE_FOLLOW_ON, EPISODE_VERIFY, evaluate
from service.domain.alert_types import AlertType as A
from service.domain.exposure import ExposureRules, denosumab_state, treated_at
from service.domain.facts import Fact, FactKind
from service.domain.features import build_features
from service.domain.medication_timeline import events_of

TODAY = date(2026, 3, 1)
INDEX = TODAY - timedelta(days=150)  # past the 16-week treatment-gap mark
RULES = ExposureRules()
ALL_TYPES = ["Procedure", "Observation", "MedicationAdministration", "MedicationDispense", "MedicationStatement"]


def day(offset: int) -> date:
    """A day relative to the index operation."""
    return INDEX + timedelta(days=offset)


def med(
    drug: str,
    event: str,
    status: str,
    offset: int,
    n: int = 0,
    end: int | None = None,
    **attrs: Any,
) -> Fact:
    return Fact(
        FactKind.MEDICATION,
        effective_date=day(offset),
        end_date=day(end) if end is not None else None,
        status=status,
        attrs={"drug": drug, "event": event, **attrs},
        source=f"Medication{event.title()}/{drug}-{n}",
    )


OPERATION = Fact(
    FactKind.VERTEBRAL_AUGMENTATION,
    effective_date=INDEX,
    status="completed",
    attrs={"method": "PKP", "levels": ["L1"]},
    source="Procedure/pkp",
)
DXA = Fact(FactKind.DXA_T_SCORE, value_num=-2.8, effective_date=day(-10), source="Observation/dxa")

AFTER, BEFORE, LONG_BEFORE = 30, -30, -400  # started after the index; shortly before; long before

# (resource type, status, timing, extra attributes) -> treated for the index fracture
MATRIX: list[tuple[str, str, int, dict[str, Any], bool]] = [
    # MedicationAdministration: only completed proves a dose; it covers its supply (alendronate: 90 days)
    ("administration", "completed", AFTER, {}, True),
    ("administration", "completed", BEFORE, {}, True),
    ("administration", "completed", LONG_BEFORE, {}, False),
    ("administration", "not-done", AFTER, {}, False),
    ("administration", "in-progress", AFTER, {}, False),
    ("administration", "on-hold", AFTER, {}, False),
    ("administration", "stopped", AFTER, {}, False),
    ("administration", "unknown", AFTER, {}, False),
    # MedicationDispense: completed is a supply
    ("dispense", "completed", AFTER, {}, True),
    ("dispense", "completed", BEFORE, {}, True),
    ("dispense", "completed", BEFORE, {"days_supply": 28}, False),  # a 28-day supply ran out before the index
    ("dispense", "completed", LONG_BEFORE, {}, False),
    ("dispense", "cancelled", AFTER, {}, False),
    ("dispense", "declined", AFTER, {}, False),
    ("dispense", "in-progress", AFTER, {}, False),
    ("dispense", "preparation", AFTER, {}, False),
    ("dispense", "stopped", AFTER, {}, False),
    # MedicationStatement: active/intended with no end covers start .. dateAsserted (or now)
    ("statement", "active", AFTER, {}, True),
    ("statement", "active", BEFORE, {}, True),
    ("statement", "active", LONG_BEFORE, {}, True),  # taken since before the fracture: active at the index
    ("statement", "active", LONG_BEFORE, {"date_asserted": day(-10).isoformat()}, False),  # asserted before it
    ("statement", "active", LONG_BEFORE, {"date_asserted": day(20).isoformat()}, True),
    ("statement", "intended", LONG_BEFORE, {}, True),
    ("statement", "completed", AFTER, {}, True),
    ("statement", "completed", BEFORE, {}, True),  # one dose given elsewhere, covering its supply
    ("statement", "completed", LONG_BEFORE, {}, False),
    ("statement", "completed", LONG_BEFORE, {"end": 10, "period": True}, True),  # its period covers the index
    ("statement", "stopped", LONG_BEFORE, {"end": -5, "period": True}, False),  # stopped before the index
    ("statement", "stopped", AFTER, {"end": 60, "period": True}, True),  # taken after the index, then stopped
    ("statement", "not-taken", AFTER, {}, False),
    ("statement", "on-hold", AFTER, {}, False),
    ("statement", "unknown", AFTER, {}, False),
    # MedicationRequest: an order (not a proposal or plan), active or completed, starts a course; a live order
    # written before the index covers it for at most a year
    ("request", "active", AFTER, {"intent": "order"}, True),
    ("request", "active", BEFORE, {"intent": "order"}, True),
    ("request", "active", LONG_BEFORE, {"intent": "order"}, False),  # a years-old order never closed
    ("request", "active", BEFORE, {"intent": "order", "end": -1}, False),  # its validity ended before the index
    ("request", "active", AFTER, {"intent": "proposal"}, False),
    ("request", "active", AFTER, {"intent": "plan"}, False),
    ("request", "active", AFTER, {"intent": "original-order"}, True),
    ("request", "on-hold", AFTER, {"intent": "order"}, False),
    ("request", "completed", AFTER, {"intent": "order"}, True),
    ("request", "completed", BEFORE, {"intent": "order"}, False),  # an order is no dose: nothing covers the index
    ("request", "cancelled", AFTER, {"intent": "order"}, False),
    ("request", "stopped", AFTER, {"intent": "order"}, False),
    ("request", "draft", AFTER, {"intent": "order"}, False),
]


@pytest.mark.parametrize(("event", "status", "offset", "extra", "treated"), MATRIX)
def test_the_one_test_of_treated_for_the_alerts_and_the_model(
    event: str, status: str, offset: int, extra: dict[str, Any], treated: bool
) -> None:
    attrs = dict(extra)
    end = attrs.pop("end", None)
    fact = med("alendronate", event, status, offset, end=end, **attrs)
    events = events_of([fact])
    assert bool(treated_at(events, INDEX, TODAY, RULES)) is treated
    alerts = {f.code for f in evaluate([OPERATION, DXA, fact], TODAY).findings}
    assert (A.TREATMENT_GAP not in alerts) is treated
    as_of = datetime.combine(TODAY, time(12), tzinfo=UTC)
    model = build_features([OPERATION, DXA, fact], ALL_TYPES, as_of).inputs["osteoporosis-treatment"]
    assert model == ("treated" if treated else "none")


@pytest.mark.parametrize(
    ("drug", "treated"),
    [
        # oncology: no osteoporosis alert, but antiresorptive exposure (docs/sources/alerts.md)
        ("denosumab-120mg", True),
        ("zoledronic-acid-4mg", True),
        ("raloxifene", True),  # counted by HEDIS
        ("calcitonin", False),  # a site setting, off by default
        ("sglt2-inhibitor", False),
        ("glucocorticoid", False),
    ],
)
def test_which_drugs_count_as_treatment(drug: str, treated: bool) -> None:
    fact = med(drug, "administration", "completed", AFTER)
    assert bool(treated_at(events_of([fact]), INDEX, TODAY, RULES)) is treated
    assert (A.TREATMENT_GAP not in {f.code for f in evaluate([OPERATION, DXA, fact], TODAY).findings}) is treated


# --- denosumab -----------------------------------------------------------------------------------------------
def ago(days: int) -> int:
    """An offset from the index for a day ``days`` before today."""
    return (TODAY - timedelta(days=days) - INDEX).days


def den(event: str, status: str, days_ago: int, n: int = 0, **attrs: Any) -> Fact:
    return med("denosumab-60mg", event, status, ago(days_ago), n=n, **attrs)


def findings(*facts: Fact) -> dict[A, tuple[str, str]]:
    return {f.code: (f.priority, f.episode.split(":")[0]) for f in evaluate(list(facts), TODAY).findings}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ([den("administration", "completed", 100)], {}),
        ([den("administration", "completed", 160)], {A.DENOSUMAB_DOSE_DUE: "routine"}),
        ([den("administration", "completed", 250)], {A.DENOSUMAB_OVERDUE: "urgent"}),
        ([den("administration", "completed", 300)], {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"}),
        ([den("dispense", "completed", 250)], {A.DENOSUMAB_OVERDUE: "urgent"}),
        ([den("administration", "not-done", 250)], {}),
        # "Prolia, active since 2019": taken by the record, no injection date: verify it (routine), no urgent alert
        ([den("statement", "active", 2000)], {A.DENOSUMAB_DOSE_DUE: "routine"}),
        # active, but asserted long ago: the last exposure is that day, and the late rules hold from it
        (
            [den("statement", "active", 2000, date_asserted=(TODAY - timedelta(400)).isoformat())],
            {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"},
        ),
        (
            [den("statement", "active", 2000, date_asserted=(TODAY - timedelta(250)).isoformat())],
            {A.DENOSUMAB_OVERDUE: "urgent"},
        ),
        (
            [den("statement", "active", 2000, date_asserted=(TODAY - timedelta(30)).isoformat())],
            {A.DENOSUMAB_DOSE_DUE: "routine"},
        ),
        # a completed statement of one day is a dose given elsewhere
        ([den("statement", "completed", 100)], {}),
        ([den("statement", "completed", 250)], {A.DENOSUMAB_OVERDUE: "urgent"}),
        # a completed statement with a period: the course ended, the record says stopped
        (
            [den("statement", "completed", 400, end=ago(30), period=True)],
            {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"},
        ),
        (
            [den("administration", "completed", 60), den("statement", "stopped", 40, n=1)],
            {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"},
        ),
        (
            [den("administration", "completed", 60), den("request", "stopped", 40, n=1, intent="order")],
            {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"},
        ),
        # a completed order on the injection's day is that injection's order fulfilled, not a stop ...
        ([den("administration", "completed", 60), den("request", "completed", 60, n=1, intent="order")], {}),
        # ... one closed after the last injection says the course was stopped
        (
            [den("administration", "completed", 60), den("request", "completed", 30, n=1, intent="order")],
            {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON: "urgent"},
        ),
        # a stop before a later dose says nothing any more
        ([den("administration", "completed", 60), den("request", "stopped", 90, n=1, intent="order")], {}),
        # an order alone proves no dose
        ([den("request", "active", 250, intent="order")], {}),
    ],
)
def test_denosumab_matrix(facts: list[Fact], expected: dict[A, str]) -> None:
    assert {code: priority for code, (priority, _) in findings(*facts).items()} == expected


def bisphosphonate(event: str, status: str, days_ago: int, **attrs: Any) -> Fact:
    return med("alendronate", event, status, ago(days_ago), n=9, **attrs)


@pytest.mark.parametrize(
    ("follow_on", "expected"),
    [
        # a dose or dispense of a bisphosphonate after the last injection resolves it
        (bisphosphonate("dispense", "completed", 20), None),
        (bisphosphonate("administration", "completed", 20), None),
        (bisphosphonate("statement", "active", 20), None),
        # an active order turns the urgent alert into a routine "confirm the follow-on was given"
        (bisphosphonate("request", "active", 20, intent="order"), ("routine", EPISODE_FOLLOW_ON)),
        # a proposal, a paused order or one written before the last injection is no follow-on plan
        (bisphosphonate("request", "active", 20, intent="proposal"), ("urgent", "denosumab-last-dose")),
        (bisphosphonate("request", "on-hold", 20, intent="order"), ("urgent", "denosumab-last-dose")),
        (bisphosphonate("request", "active", 320, intent="order"), ("urgent", "denosumab-last-dose")),
        # teriparatide and abaloparatide after denosumab are no follow-on (docs/sources/alerts.md)
        (med("teriparatide", "administration", "completed", ago(20), n=8), ("urgent", "denosumab-last-dose")),
        (med("abaloparatide", "request", "active", ago(20), n=8, intent="order"), ("urgent", "denosumab-last-dose")),
    ],
)
def test_follow_on_after_denosumab(follow_on: Fact, expected: tuple[str, str] | None) -> None:
    for last, code in [(250, A.DENOSUMAB_OVERDUE), (300, A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON)]:
        got = findings(den("administration", "completed", last), follow_on)
        assert got.get(code) == expected
        assert set(got) <= {code}


def test_a_statement_without_an_injection_date_asks_to_verify_it() -> None:
    statement = den("statement", "active", 2000)
    (finding,) = evaluate([statement], TODAY).findings
    assert finding.episode.startswith(EPISODE_VERIFY)
    assert "verify the date of the last injection" in finding.detail
    # unchanged from day to day (no day counts, a stable due date), and time alone changes nothing
    assert evaluate([statement], TODAY + timedelta(days=40)).findings == (finding,)
    assert evaluate([statement], TODAY).next_check is None
    state = denosumab_state(events_of([statement]), TODAY, RULES)
    assert (state.status, state.undated, state.on_time) == ("verify", True, True)


def test_prolia_active_since_2019_is_treated_not_stopped() -> None:
    facts = [OPERATION, DXA, den("statement", "active", 2000)]
    codes = {f.code for f in evaluate(facts, TODAY).findings}
    assert A.TREATMENT_GAP not in codes
    assert A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON not in codes
    as_of = datetime.combine(TODAY, time(12), tzinfo=UTC)
    assert build_features(facts, ALL_TYPES, as_of).inputs["osteoporosis-treatment"] == "treated"


@pytest.mark.parametrize(("days_ago", "model", "alert"), [(290, "treated", A.DENOSUMAB_OVERDUE), (300, None, None)])
def test_the_model_and_the_alerts_share_the_stopped_threshold(days_ago: int, model: str, alert: A | None) -> None:
    dose = den("administration", "completed", days_ago)
    as_of = datetime.combine(TODAY, time(12), tzinfo=UTC)
    got = build_features([OPERATION, dose], ALL_TYPES, as_of).inputs["osteoporosis-treatment"]
    codes = {f.code for f in evaluate([dose], TODAY).findings}
    if alert is not None:
        assert (got, codes) == (model, {alert})
    else:
        assert (got, codes) == ("denosumab-stopped", {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON})
