"""CDS Hooks cards and the denosumab order check, without web or database: pure builders over stored state."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from service.domain.alert_types import AlertType
from service.domain.cds import (
    CdsAlert,
    DraftDrug,
    PatientState,
    RiskSummary,
    Verdict,
    factor_of,
    review_orders,
)
from service.domain.drugs import Drug
from service.domain.facts import Fact, FactKind
from service.domain.medication_timeline import MedicationEvent
from service.fhir.cds_hooks import discovery, draft_drugs, prefetched_drugs
from service.fhir.cds_hooks_cards import OVERRIDE_SYSTEM, CardContext, order_cards, patient_view_cards
from service.fhir.validation import validate_resource

TODAY = date(2026, 5, 4)
CTX = CardContext("refracture-patient-view", "p1", "https://refracture.test/worklist/patients/p1", TODAY)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def check_card(card: dict[str, Any]) -> None:
    """The fields CDS Hooks 2.0 requires of a card, and valid FHIR R4 in every suggested action."""
    assert isinstance(card["summary"], str)
    assert 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert isinstance(card["source"]["label"], str)
    assert card["source"]["label"]
    assert set(card) <= {
        "uuid",
        "summary",
        "detail",
        "indicator",
        "source",
        "suggestions",
        "selectionBehavior",
        "overrideReasons",
        "links",
    }
    for suggestion in card.get("suggestions", []):
        assert card["selectionBehavior"] in ("at-most-one", "any")
        assert suggestion["label"]
        assert suggestion["actions"]
        for action in suggestion["actions"]:
            assert action["type"] in ("create", "update", "delete")
            assert action["description"]
            assert validate_resource(action["resource"]) == [], action["resource"]
            assert "id" not in action["resource"]
    for reason in card.get("overrideReasons", []):
        assert reason["system"] == OVERRIDE_SYSTEM
        assert reason["code"]
        assert reason["display"]
    for link in card.get("links", []):
        assert link["type"] in ("absolute", "smart")
        assert link["url"].startswith("https://")


def dose(drug: Drug, day: date, event: str = "administration", status: str = "completed") -> MedicationEvent:
    return MedicationEvent(drug, event, day, status)


def egfr(value: float, day: date = date(2026, 1, 5)) -> Fact:
    return Fact(FactKind.EGFR, value_num=value, effective_date=day, source="Observation/egfr")


def state(
    alerts: tuple[CdsAlert, ...] = (),
    medications: tuple[MedicationEvent, ...] = (),
    band: str = "high",
    missing: tuple[str, ...] = ("dxa-t-score", "vertebral-hu"),
    kidney: tuple[Fact, ...] = (egfr(62.0),),
) -> PatientState:
    risk = RiskSummary(
        "a1",
        0.27,
        0.18,
        0.41,
        band,
        "refracture-ovcf-2y/1.0.0+abc",
        TODAY,
        (factor_of("sarcopenia", 0.6), factor_of("glucocorticoids", -0.2), factor_of("diabetes", 0.001)),
        tuple(factor_of(code) for code in missing),
    )
    return PatientState("p1", risk, alerts, medications, kidney)


OVERDUE = CdsAlert("al-1", AlertType.DENOSUMAB_OVERDUE, "open", "urgent", date(2026, 3, 1), "Last dose 2025-09-01.")
DXA_GAP = CdsAlert("al-2", AlertType.BMD_ASSESSMENT_GAP, "acknowledged", "routine", date(2026, 4, 1), "No DXA.")
SNOOZED = CdsAlert("al-3", AlertType.ADHERENCE_CHECK_DUE, "snoozed", "routine", date(2026, 4, 1), "Snoozed.")


def test_discovery_lists_the_three_services_with_prefetch() -> None:
    services = {s["id"]: s for s in discovery()["services"]}
    assert {s: services[s]["hook"] for s in services} == {
        "refracture-patient-view": "patient-view",
        "refracture-order-select": "order-select",
        "refracture-order-sign": "order-sign",
    }
    for service in services.values():
        assert service["title"]
        assert service["description"]
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    assert (
        "MedicationRequest?patient={{context.patientId}}"
        in services["refracture-order-sign"]["prefetch"]["medications"]
    )


def test_patient_view_shows_alerts_most_urgent_first_then_the_risk() -> None:
    cards = patient_view_cards(state((DXA_GAP, OVERDUE, SNOOZED)), CTX)
    for card in cards:
        check_card(card)
    assert [c["indicator"] for c in cards] == ["critical", "warning", "warning"]  # overdue, DXA gap, risk (high)
    overdue, gap, risk = cards
    assert overdue["summary"].startswith("Denosumab dose overdue")
    assert overdue["source"]["topic"]["code"] == "denosumab-overdue"
    assert "refracture-ovcf-2y/1.0.0+abc" in overdue["source"]["label"]
    assert overdue["source"]["url"] == CTX.page_url
    assert overdue["selectionBehavior"] == "at-most-one"
    products = [
        s["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for s in overdue["suggestions"]
    ]
    assert products == ["993452", "705824"]  # denosumab 60 mg now, or zoledronic acid 5 mg instead
    assert gap["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "ServiceRequest"
    # The risk card: probability, band, top factors, missing inputs; no DXA suggestion while the DXA alert asks.
    assert "27 %" in risk["summary"]
    assert "high" in risk["summary"]
    assert "Sarcopenia" in risk["detail"] or "sarcopenia" in risk["detail"].lower()
    assert "Missing inputs (2" in risk["detail"]
    assert [s["actions"][0]["resource"]["code"]["coding"][0]["code"] for s in risk["suggestions"]] == ["vertebral-hu"]
    assert all(c["overrideReasons"] for c in (overdue, gap))


def test_card_uuids_are_stable_and_distinct() -> None:
    first = patient_view_cards(state((OVERDUE, DXA_GAP)), CTX)
    again = patient_view_cards(state((OVERDUE, DXA_GAP)), CTX)
    assert [c["uuid"] for c in first] == [c["uuid"] for c in again]
    uuids = [c["uuid"] for c in first] + [s["uuid"] for c in first for s in c.get("suggestions", [])]
    assert len(set(uuids)) == len(uuids)


def test_a_low_risk_without_alerts_is_one_info_card_and_an_unknown_patient_none() -> None:
    cards = patient_view_cards(state(band="low", missing=()), CTX)
    assert [c["indicator"] for c in cards] == ["info"]
    assert "suggestions" not in cards[0]
    assert patient_view_cards(PatientState("p9", None, (), ()), CTX) == []
    assert patient_view_cards(None, CTX) == []


def test_a_long_summary_is_cut_below_140_characters() -> None:
    alert = CdsAlert("al-4", AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON, "open", "urgent", TODAY, "x")
    card = patient_view_cards(state((alert,)), CTX)[0]
    check_card(card)


DMAB = DraftDrug(Drug.DENOSUMAB_60, "MedicationRequest/d1")


@pytest.mark.parametrize(
    ("drafts", "medications", "prefetched", "expected"),
    [
        ([DMAB], (), [], Verdict.FOLLOW_ON_MISSING),
        ([DraftDrug(Drug.DENOSUMAB, None)], (), [], Verdict.FOLLOW_ON_MISSING),  # strength unknown: counts as 60 mg
        ([DMAB, DraftDrug(Drug.ZOLEDRONIC_ACID_5, "MedicationRequest/z1")], (), [], None),
        ([DMAB], (), [DraftDrug(Drug.ALENDRONATE, "MedicationRequest/a1", False)], None),
        ([DraftDrug(Drug.DENOSUMAB_120, "MedicationRequest/x")], (), [], None),  # oncology: out of scope
        ([DraftDrug(Drug.ALENDRONATE, "MedicationRequest/a1")], (), [], None),
        ([DraftDrug(Drug.GLUCOCORTICOID, "MedicationRequest/g")], (), [], None),
        ([DraftDrug(Drug.DENOSUMAB_60, "MedicationRequest/d1", triggering=False)], (), [], None),  # not selected
        # A follow-on ordered after the last denosumab dose is a plan; one before it is not.
        (
            [DMAB],
            (
                dose(Drug.DENOSUMAB_60, date(2025, 11, 1)),
                dose(Drug.ZOLEDRONIC_ACID_5, date(2026, 4, 1), "request", "active"),
            ),
            [],
            None,
        ),
        (
            [DMAB],
            (dose(Drug.ZOLEDRONIC_ACID_5, date(2024, 1, 1)), dose(Drug.DENOSUMAB_60, date(2025, 11, 1))),
            [],
            Verdict.FOLLOW_ON_MISSING,
        ),
    ],
)
def test_the_denosumab_order_check(
    drafts: list[DraftDrug],
    medications: tuple[MedicationEvent, ...],
    prefetched: list[DraftDrug],
    expected: Verdict | None,
) -> None:
    found = review_orders(drafts, state(medications=medications), TODAY, prefetched)
    assert (found.verdict if found else None) == expected


def test_an_unknown_patient_gets_an_info_card_and_a_known_one_a_warning() -> None:
    ctx = CardContext("refracture-order-sign", "p1", None)
    unknown = review_orders([DMAB], None, TODAY)
    assert unknown is not None
    assert unknown.verdict is Verdict.UNKNOWN_PATIENT
    [info] = order_cards(unknown, ctx)
    check_card(info)
    assert info["indicator"] == "info"
    # refracture knows nothing of the kidneys: no bisphosphonate is suggested, a renal review is
    assert "suggestions" not in info
    assert "specialist review of renal function" in info["detail"]
    assert "links" not in info
    assert "url" not in info["source"]
    known = review_orders([DMAB], state(medications=(dose(Drug.DENOSUMAB_60, date(2025, 11, 1)),)), TODAY)
    [warning] = order_cards(known, ctx)
    check_card(warning)
    assert warning["indicator"] == "warning"
    assert warning["summary"].startswith("Denosumab must not be stopped without a follow-on drug")
    assert "2025-11-01" in warning["detail"]
    plan = warning["suggestions"][0]["actions"][0]["resource"]
    assert plan["intent"] == "plan"
    assert plan["status"] == "draft"
    assert plan["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] == "2026-11-03"
    assert {r["code"] for r in warning["overrideReasons"]} >= {"follow-on-planned", "oncology-indication"}
    assert order_cards(None, ctx) == []


def request(rid: str, medication: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        **medication,
        **extra,
    }


def test_draft_orders_are_recognised_by_code_text_and_contained_medication() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": request(
                    "d1", {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "993452"}]}}
                )
            },
            {"resource": request("d2", {"medicationCodeableConcept": {"text": "Jubbonti (denosumab-bbdz) 60 mg/mL"}})},
            {
                "resource": request(
                    "z1",
                    {"medicationReference": {"reference": "#m"}},
                    contained=[
                        {
                            "resourceType": "Medication",
                            "id": "m",
                            "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "M05BA08"}]},
                            "ingredient": [
                                {
                                    "itemCodeableConcept": {"text": "zoledronic acid"},
                                    "strength": {
                                        "numerator": {"value": 5, "code": "mg"},
                                        "denominator": {"value": 100, "code": "mL"},
                                    },
                                }
                            ],
                        }
                    ],
                )
            },
            {"resource": request("x1", {"medicationCodeableConcept": {"text": "paracetamol 500 mg"}})},
            {"resource": {"resourceType": "ServiceRequest", "id": "s1", "status": "draft"}},
        ],
    }
    found = draft_drugs(bundle)
    assert [(d.drug, d.reference, d.triggering) for d in found] == [
        (Drug.DENOSUMAB_60, "MedicationRequest/d1", True),
        (Drug.DENOSUMAB_60, "MedicationRequest/d2", True),
        (Drug.ZOLEDRONIC_ACID_5, "MedicationRequest/z1", True),
    ]
    selected = draft_drugs(bundle, ["MedicationRequest/z1"])
    assert [d.triggering for d in selected] == [False, False, True]
    assert draft_drugs(None) == []
    assert draft_drugs({"resourceType": "Bundle"}) == []


def test_prefetched_orders_count_only_when_live() -> None:
    zoledronic = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "705824"}]}}
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {**request("z1", zoledronic), "status": "active"}},
            {"resource": {**request("z2", zoledronic), "status": "cancelled"}},
        ],
    }
    found = prefetched_drugs({"medications": bundle})
    assert [(d.reference, d.triggering) for d in found] == [("MedicationRequest/z1", False)]
    assert prefetched_drugs(None) == []


def drafts_of(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        a["resource"]
        for c in cards
        for s in c.get("suggestions", [])
        for a in s["actions"]
        if a["resource"]["resourceType"] == "MedicationRequest"
    ]


STOPPED = CdsAlert("al-5", AlertType.DENOSUMAB_STOPPED_WITHOUT_FOLLOW_ON, "open", "urgent", TODAY, "stopped")
GAP = CdsAlert("al-6", AlertType.TREATMENT_GAP, "open", "urgent", TODAY, "gap")


def test_every_drug_draft_carries_an_rxnorm_code_and_the_calcium_check() -> None:
    cards = patient_view_cards(state((OVERDUE, STOPPED, GAP)), CTX)
    drafts = drafts_of(cards)
    assert {d["medicationCodeableConcept"]["coding"][0]["code"] for d in drafts} == {"993452", "705824", "46041"}
    for draft in drafts:
        assert draft["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM
        assert "25-OH vitamin D" in draft["note"][0]["text"]
    known = review_orders([DMAB], state(medications=(dose(Drug.DENOSUMAB_60, date(2025, 11, 1)),)), TODAY)
    for draft in drafts_of(order_cards(known, CTX)):
        assert draft["medicationCodeableConcept"]["coding"][0]["system"] == RXNORM


@pytest.mark.parametrize(
    "kidney",
    [(egfr(25.0),), (egfr(62.0, date(2024, 12, 1)),), ()],  # low, more than a year old, none
)
def test_no_zoledronic_acid_when_the_kidneys_do_not_allow_it(kidney: tuple[Fact, ...]) -> None:
    cards = patient_view_cards(state((OVERDUE, STOPPED, GAP), kidney=kidney), CTX)
    for card in cards:
        check_card(card)
    products = {d["medicationCodeableConcept"]["coding"][0]["code"] for d in drafts_of(cards)}
    assert products == {"993452"}  # denosumab only: no zoledronic acid, no alendronate
    labels = " ".join(s["label"] for c in cards for s in c.get("suggestions", [])).lower()
    assert "zoledronic" not in labels
    assert "alendronate" not in labels
    stopped = next(c for c in cards if c["source"].get("topic", {}).get("code") == STOPPED.code.value)
    assert "Specialist review (renal function)" in stopped["summary"]
    known = review_orders(
        [DMAB], state(medications=(dose(Drug.DENOSUMAB_60, date(2025, 11, 1)),), kidney=kidney), TODAY
    )
    [warning] = order_cards(known, CTX)
    check_card(warning)
    assert "suggestions" not in warning
    assert "specialist review of renal function" in warning["detail"]


def test_ckd_stage_4_rules_out_a_bisphosphonate_whatever_the_egfr() -> None:
    ckd = Fact(FactKind.CHRONIC_KIDNEY_DISEASE, status="active", attrs={"stage": 4}, source="Condition/ckd")
    cards = patient_view_cards(state((GAP,), kidney=(egfr(40.0), ckd)), CTX)
    assert not drafts_of(cards)


@pytest.mark.parametrize("anabolic", [Drug.TERIPARATIDE, Drug.ABALOPARATIDE, Drug.ROMOSOZUMAB])
def test_an_anabolic_drug_is_no_follow_on_to_denosumab(anabolic: Drug) -> None:
    found = review_orders([DMAB, DraftDrug(anabolic, "MedicationRequest/t")], state(), TODAY)
    assert found is not None
    assert found.verdict is Verdict.FOLLOW_ON_MISSING


def test_a_verify_or_confirm_alert_suggests_no_order() -> None:
    verify = CdsAlert("v", AlertType.DENOSUMAB_DOSE_DUE, "open", "routine", TODAY, "x", "denosumab-verify:2019-01-01")
    confirm = CdsAlert("c", AlertType.DENOSUMAB_OVERDUE, "open", "routine", TODAY, "x", "denosumab-follow-on-ordered:x")
    cards = patient_view_cards(state((verify, confirm)), CTX)
    assert not drafts_of(cards)
    assert {c["summary"].split(": ", 1)[1] for c in cards[:2]} == {
        "Verify the date of the last denosumab injection",
        "Confirm the bisphosphonate ordered to follow denosumab was given",
    }
