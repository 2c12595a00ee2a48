"""Telling the drugs apart by ingredient and strength, not by a list of product codes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from service.domain.drugs import Drug
from service.fhir import systems as S
from service.fhir.medications import classify


def concept(text: str | None = None, system: str | None = None, code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if text:
        out["text"] = text
    if code:
        out["coding"] = [{"system": system, "code": code}]
    return out


@pytest.mark.parametrize(
    ("concepts", "dose", "expected"),
    [
        ([concept("1 ML denosumab 60 MG/ML Prefilled Syringe")], None, Drug.DENOSUMAB_60),
        ([concept("1.7 ML denosumab 70 MG/ML Injection [Xgeva]")], None, Drug.DENOSUMAB_120),
        ([concept("denosumab 120 MG/1.7 ML")], None, Drug.DENOSUMAB_120),
        ([concept(system=S.RXNORM, code="993452")], None, Drug.DENOSUMAB_60),
        ([concept(system=S.RXNORM, code="1046402")], None, Drug.DENOSUMAB_120),
        # A biosimilar with a suffixed name and a product code nobody listed: ingredient + strength decide.
        ([concept("denosumab-bbdz 60 mg/mL prefilled syringe", S.RXNORM, "9999999")], None, Drug.DENOSUMAB_60),
        ([concept("Wyost (denosumab-bbdz) 120 mg/1.7 mL")], None, Drug.DENOSUMAB_120),
        ([concept(system=S.ATC, code="M05BX04")], {"value": 60, "unit": "mg"}, Drug.DENOSUMAB_60),
        ([concept(system=S.ATC, code="M05BX04")], {"value": Decimal("120"), "code": "mg"}, Drug.DENOSUMAB_120),
        ([concept(system=S.ATC, code="M05BX04")], None, Drug.DENOSUMAB),
        ([concept("zoledronic acid 5 MG/100 ML Injection")], None, Drug.ZOLEDRONIC_ACID_5),
        ([concept("100 ML zoledronic acid 0.05 MG/ML Injection")], None, Drug.ZOLEDRONIC_ACID_5),
        ([concept("100 ML zoledronic acid 0.04 MG/ML Injection")], None, Drug.ZOLEDRONIC_ACID_4),
        ([concept("zoledronic acid 4 MG/5 ML Injectable Solution")], None, Drug.ZOLEDRONIC_ACID_4),
        ([concept(system=S.RXNORM, code="77655")], {"value": 5, "unit": "mg"}, Drug.ZOLEDRONIC_ACID_5),
        ([concept("Reclast")], None, Drug.ZOLEDRONIC_ACID),
        ([concept("Alendronic acid 10 MG Oral Tablet", S.RXNORM, "904419")], None, Drug.ALENDRONATE),
        ([concept("alendronate sodium 70 mg tablet")], None, Drug.ALENDRONATE),
        ([concept(system=S.ATC, code="M05BA07")], None, Drug.RISEDRONATE),
        ([concept("Forteo pen")], None, Drug.TERIPARATIDE),
        ([concept(system=S.ATC, code="H05AA04")], None, Drug.ABALOPARATIDE),
        ([concept("Evenity 105 mg/1.17 mL")], None, Drug.ROMOSOZUMAB),
        ([concept(system=S.RXNORM, code="72143")], None, Drug.RALOXIFENE),
        ([concept("empagliflozin 10 MG Oral Tablet")], None, Drug.SGLT2_INHIBITOR),
        ([concept(system=S.ATC, code="A10BK01")], None, Drug.SGLT2_INHIBITOR),
        ([concept("prednisone 5 MG Oral Tablet")], None, Drug.GLUCOCORTICOID),
        ([concept(system=S.ATC, code="H02AB06")], None, Drug.GLUCOCORTICOID),
    ],
)
def test_classify(concepts: list[dict[str, Any]], dose: dict[str, Any] | None, expected: Drug) -> None:
    match = classify(concepts, dose=dose)
    assert match is not None
    assert match.drug is expected


@pytest.mark.parametrize(
    "text", ["Simvastatin 20 MG Oral Tablet", "budesonide 0.5 MG/ML Inhalation Suspension", "hydrocortisone cream 1%"]
)
def test_other_drugs_and_local_glucocorticoids_are_not_tracked(text: str) -> None:
    assert classify([concept(text)]) is None


def test_strength_from_a_medication_resource_ingredient() -> None:
    ingredient = {
        "itemCodeableConcept": {"coding": [{"system": S.ATC, "code": "M05BX04"}]},
        "strength": {"numerator": {"value": 60, "code": "mg"}, "denominator": {"value": 1, "code": "mL"}},
    }
    match = classify([ingredient["itemCodeableConcept"]], ingredients=[ingredient])
    assert match is not None
    assert match.drug is Drug.DENOSUMAB_60


def test_a_local_code_maps_through_the_code_map() -> None:
    local = {("urn:oid:1.2.3.hospital.drugs", "DMAB60"): (S.RXNORM, "993452")}
    match = classify(
        [concept(system="urn:oid:1.2.3.hospital.drugs", code="DMAB60")], local_target=lambda s, c: local.get((s, c))
    )
    assert match is not None
    assert match.drug is Drug.DENOSUMAB_60


@pytest.mark.parametrize(
    ("concepts", "dose", "ingredient", "mg"),
    [
        ([concept("prednisone 5 MG Oral Tablet")], None, "prednisone", 5.0),
        ([concept(system=S.RXNORM, code="198145")], None, "prednisone", 10.0),
        ([concept(system=S.RXNORM, code="197582")], None, "dexamethasone", 4.0),
        ([concept(system=S.RXNORM, code="8638")], {"value": 7.5, "unit": "mg"}, "prednisolone", 7.5),
        ([concept(system=S.ATC, code="H02AB04")], {"value": 4, "unit": "mg"}, "methylprednisolone", 4.0),
        ([concept(system=S.ATC, code="H02AB13")], None, "deflazacort", None),
        # the dose given wins over the tablet's strength (2 x 5 mg tablets)
        ([concept("prednisolone 5 MG Oral Tablet")], {"value": 10, "unit": "mg"}, "prednisolone", 10.0),
        ([concept("methylprednisolone acetate 40 mg/mL injection")], None, "methylprednisolone", None),
    ],
)
def test_which_glucocorticoid_and_its_dose(
    concepts: list[dict[str, Any]], dose: dict[str, Any] | None, ingredient: str, mg: float | None
) -> None:
    match = classify(concepts, dose=dose)
    assert match is not None
    assert (match.drug, match.ingredient, match.dose_mg) == (Drug.GLUCOCORTICOID, ingredient, mg)
