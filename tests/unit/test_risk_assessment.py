"""The RiskAssessment refracture emits: valid R4, shaped as the contract and HL7's own examples."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from service.domain.assessment import assess
from service.domain.facts import Fact, FactKind
from service.fhir.risk_assessment import (
    CONTRIBUTION_EXTENSION,
    MISSING_EXTENSION,
    RANGE_EXTENSION,
    build_risk_assessment,
    percent,
    significant,
)
from service.fhir.validation import validate_resource
from tests.support.paths import FIXTURES


def sample(**extra: Any) -> dict[str, Any]:
    facts = [
        Fact(
            FactKind.VERTEBRAL_AUGMENTATION,
            effective_date=date(2025, 3, 10),
            status="completed",
            attrs={"method": "PVP", "levels": ["T12"]},
            source="Procedure/op-1",
        ),
        Fact(FactKind.BIRTH_DATE, effective_date=date(1944, 6, 1), source="Patient/p-1"),
        Fact(FactKind.SEX, value_text="female", source="Patient/p-1"),
        Fact(
            FactKind.VERTEBRAL_HU,
            value_num=52.0,
            effective_date=date(2025, 3, 8),
            attrs={"levels": ["T12"]},
            source="Observation/hu-1",
        ),
        Fact(FactKind.SARCOPENIA_DIAGNOSIS, effective_date=date(2024, 5, 1), status="active", source="Condition/sarc"),
    ]
    result = assess(
        "p-1", facts, ["Patient", "Procedure", "Observation", "Condition"], datetime(2025, 6, 1, 9, 30, tzinfo=UTC)
    )
    assert result is not None
    return build_risk_assessment("3f1b7c2e-6d1a-5b7e-9f00-1c2d3e4f5a6b", result)


def test_it_is_valid_fhir_r4() -> None:
    assert validate_resource(sample()) == []


def test_it_says_what_the_contract_says() -> None:
    resource = sample()
    assert resource["status"] == "final"
    assert resource["subject"] == {"reference": "Patient/p-1"}
    assert resource["identifier"] == [
        {"system": "https://refracture.dev/fhir/sid/risk-assessment", "value": resource["id"]}
    ]
    assert resource["method"]["coding"][0]["code"] == "refracture-ovcf-2y"
    assert "version" in resource["method"]["coding"][0]
    prediction = resource["prediction"][0]
    assert 0 < prediction["probabilityDecimal"] < 1  # a fraction, as HL7's examples, not a percentage
    assert (
        prediction["qualitativeRisk"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/risk-probability"
    )
    assert prediction["qualitativeRisk"]["coding"][0]["code"] in {"low", "moderate", "high"}
    assert prediction["whenPeriod"] == {"start": "2025-03-10", "end": "2027-03-10"}
    assert {b["reference"] for b in resource["basis"]} >= {"Procedure/op-1", "Observation/hu-1", "Condition/sarc"}
    assert "Sarcopenia: yes" in resource["note"][0]["text"]
    assert "not a diagnosis" in resource["note"][0]["text"]
    factors = [e for e in resource["extension"] if e["url"] == CONTRIBUTION_EXTENSION]
    missing = [e for e in resource["extension"] if e["url"] == MISSING_EXTENSION]
    # Every scored factor: a contribution when known, listed when missing (the two shown-only ones are unknown here).
    assert len(factors) + len(missing) == 23
    codes = {part["valueCoding"]["code"] for e in factors for part in e["extension"] if part["url"] == "factor"}
    assert {"sarcopenia", "vertebral-hu", "thoracolumbar-junction"} <= codes


def test_it_follows_hl7s_own_examples() -> None:
    examples = [json.loads(p.read_text()) for p in sorted((FIXTURES / "hl7-r4-outputs").glob("RiskAssessment-*.json"))]
    assert len(examples) == 6
    used: set[str] = set()
    for example in examples:
        used |= set(example)
        for prediction in example.get("prediction", []):
            if "probabilityDecimal" in prediction:
                assert 0 <= prediction["probabilityDecimal"] <= 1  # HL7's examples write fractions
    resource = sample()
    # Every top-level element refracture sets is one HL7's examples set too, except its own explanation extension.
    assert set(resource) - {"extension"} <= used
    assert validate_resource(resource) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.1487, 0.15), (0.047312, 0.047), (0.02, 0.02), (0.000123, 0.00012), (1e-9, 1e-9), (0.99996, 0.999), (0.6, 0.6)],
)
def test_probabilities_are_rounded_to_significant_figures_never_to_0(value: float, expected: float) -> None:
    assert significant(value) == pytest.approx(expected)
    assert 0 < significant(value) < 1


@pytest.mark.parametrize(
    ("value", "text"), [(0.1487, "15 %"), (0.047, "4.7 %"), (0.02, "2 %"), (0.0004, "under 0.1 %")]
)
def test_percentages_as_a_clinician_reads_them(value: float, text: str) -> None:
    assert percent(value) == text


def test_the_range_and_what_would_narrow_it_are_in_the_resource_and_the_note() -> None:
    resource = sample()
    prediction = resource["prediction"][0]
    probability = prediction["probabilityDecimal"]
    assert len(f"{probability:g}".replace("0.", "").lstrip("0")) <= 2  # two significant figures
    ranged = next(e for e in prediction["extension"] if e["url"] == RANGE_EXTENSION)
    parts = {p["url"]: p for p in ranged["extension"]}
    assert parts["low"]["valueDecimal"] < probability < parts["high"]["valueDecimal"]
    narrowed = [p["valueCoding"]["code"] for p in ranged["extension"] if p["url"] == "narrowedBy"]
    assert 1 <= len(narrowed) <= 2
    note = resource["note"][0]["text"]
    assert "8 in 10 patients like this one lie between" in note
    assert "would narrow it most" in note
    assert "averaged over a reference cohort" in note
    assert validate_resource(resource) == []


def test_a_patient_at_the_floor_is_told_so_and_stays_valid() -> None:
    facts = [
        Fact(
            FactKind.VERTEBRAL_AUGMENTATION,
            effective_date=date(2025, 3, 10),
            status="completed",
            attrs={"method": "PKP", "levels": ["L4"]},
            source="Procedure/op-2",
        ),
        Fact(FactKind.BIRTH_DATE, effective_date=date(1966, 6, 1), source="Patient/p-2"),
        Fact(FactKind.SEX, value_text="male", source="Patient/p-2"),
        Fact(FactKind.DXA_T_SCORE, value_num=0.5, effective_date=date(2025, 2, 1), source="Observation/dxa-2"),
        Fact(
            FactKind.VERTEBRAL_HU,
            value_num=160.0,
            effective_date=date(2025, 3, 8),
            attrs={"levels": ["L4"]},
            source="Observation/hu-2",
        ),
        Fact(FactKind.SARCOPENIA_FINDING, value_num=0.0, effective_date=date(2025, 3, 1), source="Observation/s-2"),
    ]
    result = assess(
        "p-2", facts, ["Patient", "Procedure", "Observation", "Condition"], datetime(2025, 6, 1, tzinfo=UTC)
    )
    assert result is not None
    resource = build_risk_assessment("3f1b7c2e-6d1a-5b7e-9f00-1c2d3e4f5a6c", result)
    # The first model gave a 60-year-old man with good bone 0.03-0.1 %, written as 0.0.
    assert result.estimate.bounded == "floor"
    assert resource["prediction"][0]["probabilityDecimal"] == 0.02
    assert "clinical floor" in resource["note"][0]["text"]
    assert validate_resource(resource) == []
