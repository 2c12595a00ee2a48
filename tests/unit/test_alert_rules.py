"""The alert rules, table-driven over timelines, with the day as an injected value."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from service.domain.alert_rules import AlertConfig, evaluate
from service.domain.alert_types import AlertType as A
from service.domain.facts import Fact, FactKind
from service.fhir.normalise import Normaliser
from service.fhir.terminology import Terminology

TODAY = date(2026, 3, 1)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def med(
    drug: str, days_ago: int, event: str = "administration", status: str = "completed", n: int = 0, **attrs: Any
) -> Fact:
    return Fact(
        FactKind.MEDICATION,
        effective_date=ago(days_ago),
        status=status,
        attrs={"drug": drug, "event": event, **attrs},
        source=f"Medication{event.title()}/{drug}-{n}",
    )


def procedure(days_ago: int) -> Fact:
    return Fact(
        FactKind.VERTEBRAL_AUGMENTATION,
        effective_date=ago(days_ago),
        status="completed",
        attrs={"method": "PKP", "levels": ["L1"]},
        source="Procedure/pkp",
    )


def fracture(days_ago: int) -> Fact:
    return Fact(FactKind.VERTEBRAL_FRACTURE, effective_date=ago(days_ago), status="active", source="Condition/ovcf")


def dxa(days_ago: int) -> Fact:
    return Fact(FactKind.DXA_T_SCORE, value_num=-2.8, effective_date=ago(days_ago), source="Observation/dxa")


def codes(*facts: Fact, config: AlertConfig | None = None) -> set[A]:
    return {f.code for f in evaluate(facts, TODAY, config).findings}


DENOSUMAB = [A.DENOSUMAB_DOSE_DUE, A.DENOSUMAB_OVERDUE, A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (100, set()),
        (151, set()),
        (152, {A.DENOSUMAB_DOSE_DUE}),
        (212, {A.DENOSUMAB_DOSE_DUE}),
        (213, {A.DENOSUMAB_DOSE_DUE}),
        (214, {A.DENOSUMAB_OVERDUE}),
        (295, {A.DENOSUMAB_OVERDUE}),
        (296, {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}),
        (800, {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}),
    ],
)
def test_denosumab_timing(days: int, expected: set[A]) -> None:
    assert codes(med("denosumab-60mg", days)) == expected


@pytest.mark.parametrize(("days", "next_check"), [(100, 152), (152, 214), (214, 296), (296, None)])
def test_the_next_check_is_the_next_threshold(days: int, next_check: int | None) -> None:
    result = evaluate([med("denosumab-60mg", days)], TODAY)
    expected = ago(days) + timedelta(days=next_check) if next_check else None
    assert result.next_check == expected


def test_only_the_latest_dose_counts_and_the_due_date_is_six_months_after_it() -> None:
    findings = evaluate([med("denosumab-60mg", 400, n=1), med("denosumab-60mg", 220, n=2)], TODAY).findings
    (finding,) = findings
    assert finding.code is A.DENOSUMAB_OVERDUE
    assert finding.due == ago(220) + timedelta(days=183)
    assert finding.evidence == ("MedicationAdministration/denosumab-60mg-2",)
    assert finding.priority == "urgent"


def test_denosumab_120_mg_is_oncology_and_raises_nothing() -> None:
    assert codes(med("denosumab-120mg", 250)) == set()


def test_denosumab_of_unknown_strength_counts_unless_given_monthly() -> None:
    assert codes(med("denosumab", 250)) == {A.DENOSUMAB_OVERDUE}
    monthly = [med("denosumab", 310, n=1), med("denosumab", 280, n=2), med("denosumab", 250, n=3)]
    assert codes(*monthly) == set()
    assert codes(med("denosumab", 250), config=AlertConfig(denosumab_unknown_strength_counts=False)) == set()


@pytest.mark.parametrize("follow_on", ["zoledronic-acid-5mg", "alendronate", "risedronate", "ibandronate"])
def test_a_follow_on_drug_after_the_last_dose_resolves(follow_on: str) -> None:
    assert codes(med("denosumab-60mg", 250), med(follow_on, 20, n=1)) & set(DENOSUMAB) == set()


@pytest.mark.parametrize("anabolic", ["teriparatide", "abaloparatide", "romosozumab"])
def test_an_anabolic_drug_after_denosumab_is_no_follow_on(anabolic: str) -> None:
    # docs/sources/alerts.md: bone is lost in the switch; only a bisphosphonate prevents the rebound.
    assert codes(med("denosumab-60mg", 250), med(anabolic, 20, n=1)) == {A.DENOSUMAB_OVERDUE}


def test_a_follow_on_drug_before_the_last_dose_does_not() -> None:
    assert codes(med("zoledronic-acid-5mg", 600, n=1), med("denosumab-60mg", 250)) == {A.DENOSUMAB_OVERDUE}


def test_a_follow_on_only_ordered_is_not_yet_a_follow_on() -> None:
    ordered = med("zoledronic-acid-5mg", 20, event="request", status="active", n=1)
    assert codes(med("denosumab-60mg", 250), ordered) == {A.DENOSUMAB_OVERDUE}


def test_a_medication_request_alone_proves_no_dose() -> None:
    assert codes(med("denosumab-60mg", 250, event="request", status="active")) == set()


@pytest.mark.parametrize(
    ("event", "status", "fires"),
    [
        ("administration", "not-done", False),
        ("administration", "in-progress", False),
        ("dispense", "completed", True),
        ("statement", "completed", True),
        ("statement", "active", True),
        ("statement", "not-taken", False),
    ],
)
def test_which_events_prove_a_dose(event: str, status: str, fires: bool) -> None:
    assert bool(codes(med("denosumab-60mg", 250, event=event, status=status))) is fires


def test_an_entered_in_error_dose_is_ignored() -> None:
    normaliser = Normaliser(Terminology())

    def admin(aid: str, day: date, status: str) -> list[Fact]:
        resource = {
            "resourceType": "MedicationAdministration",
            "id": aid,
            "status": status,
            "medicationCodeableConcept": {"text": "denosumab 60 mg/mL prefilled syringe"},
            "subject": {"reference": "Patient/p"},
            "effectiveDateTime": day.isoformat(),
        }
        return normaliser.normalise(resource, lambda _: None).facts

    facts = admin("old", ago(250), "completed") + admin("recent", ago(30), "entered-in-error")
    assert codes(*facts) == {A.DENOSUMAB_OVERDUE}


def test_stopped_in_the_record_fires_at_once() -> None:
    stop = med("denosumab-60mg", 40, event="request", status="stopped", n=1)
    assert codes(med("denosumab-60mg", 60), stop) == {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}
    statement = med("denosumab-60mg", 40, event="statement", status="stopped", n=2)
    assert codes(med("denosumab-60mg", 60), statement) == {A.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON}
    # An order stopped before a later dose no longer says anything.
    assert codes(med("denosumab-60mg", 60), med("denosumab-60mg", 90, event="request", status="stopped", n=3)) == set()


# --- treatment gap after the fracture ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index", "days", "expected"),
    [
        (procedure, 111, set()),
        (procedure, 112, {A.TREATMENT_GAP}),
        (fracture, 112, {A.TREATMENT_GAP}),
        (fracture, 80, set()),
    ],
)
def test_treatment_gap_from_a_procedure_or_a_condition(index: Any, days: int, expected: set[A]) -> None:
    assert codes(index(days), dxa(days)) == expected


def test_the_gap_counts_from_the_fracture_of_the_episode_not_the_later_operation() -> None:
    (finding,) = evaluate([fracture(130), procedure(100), dxa(100)], TODAY).findings
    assert finding.code is A.TREATMENT_GAP
    assert finding.due == ago(130) + timedelta(days=112)
    assert set(finding.evidence) == {"Condition/ovcf", "Procedure/pkp"}


@pytest.mark.parametrize(
    "treatment",
    [
        med("alendronate", 50, event="request", status="active"),  # started after the fracture
        med("zoledronic-acid-5mg", 200),  # an infusion before the fracture still covers it (yearly)
        med("alendronate", 400, event="request", status="active"),  # started before and still active
        med("raloxifene", 30, event="dispense"),  # counted by the HEDIS measure
        med("denosumab-60mg", 100),
    ],
)
def test_treatment_closes_the_gap(treatment: Fact) -> None:
    assert A.TREATMENT_GAP not in codes(procedure(150), dxa(150), treatment)


@pytest.mark.parametrize(
    "not_treatment",
    [
        med("alendronate", 400, event="request", status="completed"),  # an old course, over before the fracture
        med("zoledronic-acid-5mg", 600),  # the yearly infusion no longer covers the fracture
        med("calcitonin", 30, event="dispense"),
        med("alendronate", 50, event="request", status="cancelled"),
    ],
)
def test_what_does_not_close_the_gap(not_treatment: Fact) -> None:
    assert A.TREATMENT_GAP in codes(procedure(150), dxa(150), not_treatment)


def test_calcitonin_is_a_site_setting() -> None:
    facts = [procedure(150), dxa(150), med("calcitonin", 30, event="dispense")]
    assert A.TREATMENT_GAP not in codes(*facts, config=AlertConfig(calcitonin_counts=True))


# --- bone density gap -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ([procedure(83)], False),
        ([procedure(84)], True),
        ([fracture(84)], True),
        ([procedure(200), dxa(200 + 700)], False),  # within 2 years before the fracture
        ([procedure(200), dxa(200 + 800)], True),  # older than that
        ([procedure(200), dxa(10)], False),  # any time after
    ],
)
def test_bmd_assessment_gap(facts: list[Fact], expected: bool) -> None:
    assert (A.BMD_ASSESSMENT_GAP in codes(*facts)) is expected


def test_a_bmd_value_counts_as_well_as_a_t_score() -> None:
    bmd = Fact(FactKind.DXA_BMD, value_num=0.7, effective_date=ago(10), source="Observation/bmd")
    assert A.BMD_ASSESSMENT_GAP not in codes(procedure(200), bmd)


# --- adherence --------------------------------------------------------------------------------------------
def test_adherence_check_when_a_dose_was_due_and_none_came() -> None:
    started = med("zoledronic-acid-5mg", 430)  # after the fracture, yearly: the next was due 65 days ago
    findings = evaluate([procedure(450), dxa(450), started], TODAY).findings
    (finding,) = [f for f in findings if f.code is A.ADHERENCE_CHECK_DUE]
    # due after a year plus the 60-day grace: a yearly infusion a few weeks late is no lapse
    assert finding.due == ago(430) + timedelta(days=365 + 60 + 1)
    assert finding.priority == "routine"


@pytest.mark.parametrize("oncology", ["zoledronic-acid-4mg", "denosumab-120mg"])
def test_an_oncology_dose_closes_the_gap_and_raises_no_adherence_alert(oncology: str) -> None:
    assert codes(procedure(500), dxa(500), med(oncology, 480)) == set()


def test_adherence_is_fine_when_the_next_dose_came() -> None:
    facts = [procedure(450), dxa(450), med("zoledronic-acid-5mg", 400), med("zoledronic-acid-5mg", 40, n=1)]
    assert A.ADHERENCE_CHECK_DUE not in codes(*facts)


def test_adherence_waits_for_a_year() -> None:
    result = evaluate([procedure(300), dxa(300), med("alendronate", 250, event="dispense", days_supply=90)], TODAY)
    assert A.ADHERENCE_CHECK_DUE not in {f.code for f in result.findings}
    assert result.next_check == ago(250) + timedelta(days=365)


def test_future_facts_are_not_yet_true() -> None:
    tomorrow = Fact(
        FactKind.MEDICATION,
        effective_date=TODAY + timedelta(days=1),
        status="completed",
        attrs={"drug": "zoledronic-acid-5mg", "event": "administration"},
        source="x/y",
    )
    assert codes(med("denosumab-60mg", 250), tomorrow) == {A.DENOSUMAB_OVERDUE}


def test_alert_texts_do_not_change_from_day_to_day() -> None:
    day_one = evaluate([med("denosumab-60mg", 250)], TODAY).findings
    day_two = evaluate([med("denosumab-60mg", 250)], TODAY + timedelta(days=3)).findings
    assert day_one == day_two


# --- who starts the fracture-liaison clock (docs/sources/alerts.md, 'Index event')
# ----------------------------------------
def born(years_before_today: int) -> Fact:
    return Fact(FactKind.BIRTH_DATE, effective_date=date(TODAY.year - years_before_today, 1, 1))


def condition(kind: FactKind, days_ago: int | None = None, **attrs: Any) -> Fact:
    return Fact(
        kind,
        effective_date=ago(days_ago) if days_ago is not None else None,
        status="active",
        attrs=attrs,
        source=f"Condition/{kind.value}",
    )


@pytest.mark.parametrize(
    ("facts", "gap"),
    [
        ([procedure(150)], True),
        ([procedure(150), born(72)], True),
        ([procedure(150), born(49)], False),  # under 50 at the fracture
        ([procedure(150), born(51)], True),  # 50 at the fracture
        ([procedure(150), condition(FactKind.MALIGNANCY, type="myeloma")], False),
        ([fracture(150), condition(FactKind.MALIGNANCY, type="bone-metastasis")], False),
        ([procedure(150), condition(FactKind.MALIGNANCY, type="neoplastic-fracture")], False),
        # a traumatic fracture code (S22.0 / S32.0) alone starts nothing, nor the augmentation done for it ...
        ([condition(FactKind.VERTEBRAL_FRACTURE, 150, traumatic=True)], False),
        ([procedure(150), condition(FactKind.VERTEBRAL_FRACTURE, 160, traumatic=True)], False),
        # ... unless the record has an osteoporosis code
        ([condition(FactKind.VERTEBRAL_FRACTURE, 150, traumatic=True), condition(FactKind.OSTEOPOROSIS)], True),
        # a fracture without onset has no date: it starts no clock (never recordedDate)
        ([condition(FactKind.VERTEBRAL_FRACTURE, None, osteoporotic=True)], False),
    ],
)
def test_who_starts_the_clock(facts: list[Fact], gap: bool) -> None:
    assert (A.TREATMENT_GAP in codes(*facts, dxa(150))) is gap


# --- the done-when cases -----------------------------------------------------------------------------
def test_on_alendronate_since_before_the_fracture_no_treatment_gap() -> None:
    since = med("alendronate", 900, event="statement", status="active")  # taken for years, no end
    assert codes(procedure(130), dxa(130), since) == set()


def test_untreated_the_gap_opens_at_16_weeks() -> None:
    assert codes(procedure(111), dxa(111)) == set()
    assert codes(procedure(112), dxa(112)) == {A.TREATMENT_GAP}


def test_kyphoplasty_with_myeloma_on_zoledronic_acid_4_mg_raises_no_osteoporosis_alert() -> None:
    normaliser = Normaliser(Terminology())
    subject = {"reference": "Patient/p"}
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p", "birthDate": "1950-02-01", "gender": "female"},
        {
            "resourceType": "Procedure",
            "id": "pkp",
            "status": "completed",
            "subject": subject,
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22514"}]},
            "performedDateTime": ago(200).isoformat(),
        },
        {
            "resourceType": "Condition",
            "id": "myeloma",
            "subject": subject,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C90.00"}]},
            "onsetDateTime": ago(400).isoformat(),
        },
    ]
    resources += [
        {
            "resourceType": "MedicationAdministration",
            "id": f"zol-{n}",
            "status": "completed",
            "subject": subject,
            "medicationCodeableConcept": {"text": "zoledronic acid 4 mg/5 mL concentrate"},
            "effectiveDateTime": ago(days).isoformat(),
        }
        for n, days in [(1, 90), (2, 60), (3, 30)]
    ]
    resources.append(
        {
            "resourceType": "MedicationAdministration",
            "id": "xgeva",
            "status": "completed",
            "subject": subject,
            "medicationCodeableConcept": {"text": "Xgeva 120 mg/1.7 mL"},
            "effectiveDateTime": ago(300).isoformat(),
        }
    )
    facts = [fact for r in resources for fact in normaliser.normalise(r, lambda _: None).facts]
    assert {f.attrs.get("drug") for f in facts if f.kind is FactKind.MEDICATION} == {
        "zoledronic-acid-4mg",
        "denosumab-120mg",
    }
    assert codes(*facts) == set()
