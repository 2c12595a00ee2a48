"""Resources to facts: codes recognised, units converted, levels and dates kept, mistakes ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.domain.facts import FactKind
from service.fhir import systems as S
from service.fhir.normalise import Normalised, Normaliser
from service.fhir.terminology import Terminology, load_code_map


def normalise(
    resource: dict[str, Any], medications: dict[str, Any] | None = None, terminology: Terminology | None = None
) -> Normalised:
    return Normaliser(terminology or Terminology()).normalise(resource, (medications or {}).get)


def observation(code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o",
        "status": "final",
        "code": {"coding": [code]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-03-04",
        **extra,
    }


def test_vertebral_hu_at_a_level() -> None:
    result = normalise(
        observation(
            {"system": S.MEASURE, "code": "vertebral-hu"},
            valueQuantity={"value": 62, "code": "[hnsf'U]"},
            bodySite={"coding": [{"system": S.VERTEBRAL_LEVEL, "code": "L1"}]},
        )
    )
    assert result.patient_id == "p"
    (fact,) = result.facts
    assert fact.kind is FactKind.VERTEBRAL_HU
    assert fact.value_num == 62
    assert fact.unit == "[hnsf'U]"
    assert fact.attrs["levels"] == ["L1"]
    assert str(fact.effective_date) == "2025-03-04"


def test_cement_ratio_as_a_fraction_becomes_percent_and_keeps_the_operation() -> None:
    result = normalise(
        observation(
            {"system": S.MEASURE, "code": "cement-volume-ratio"},
            valueQuantity={"value": 0.15, "code": "1"},
            partOf=[{"reference": "Procedure/pkp"}],
        )
    )
    (fact,) = result.facts
    assert fact.value_num == pytest.approx(15.0)
    assert fact.attrs["part_of"] == ["Procedure/pkp"]


def test_boolean_and_coded_findings() -> None:
    leak = normalise(observation({"system": S.MEASURE, "code": "cement-leakage"}, valueBoolean=True)).facts[0]
    assert (leak.value_num, leak.value_text) == (1.0, "true")
    where = normalise(
        observation({"system": S.MEASURE, "code": "cement-leakage"}, valueCodeableConcept={"text": "disc"})
    ).facts[0]
    assert (where.value_num, where.value_text) == (1.0, "disc")


def test_a_unit_that_does_not_fit_is_flagged_not_converted() -> None:
    (fact,) = normalise(
        observation({"system": S.LOINC, "code": "38267-1"}, valueQuantity={"value": 0.9, "code": "g/cm2"})
    ).facts
    assert fact.value_num is None
    assert fact.attrs["unit_problem"] == "0.9 g/cm2"


def test_femoral_neck_is_recognised_by_body_site() -> None:
    (fact,) = normalise(
        observation(
            {"system": S.LOINC, "code": "38263-0"},
            valueQuantity={"value": -2.6, "code": "{T-score}"},
            bodySite={"coding": [{"system": S.SNOMED, "code": "29627003"}]},
        )
    ).facts
    assert fact.attrs["site"] == "femoral-neck"


def test_components_each_give_a_fact() -> None:
    panel = observation(
        {"system": S.LOINC, "code": "38268-9"},
        component=[
            {"code": {"coding": [{"system": S.LOINC, "code": "38267-1"}]}, "valueQuantity": {"value": -2.8}},
            {"code": {"coding": [{"system": S.LOINC, "code": "38264-8"}]}, "valueQuantity": {"value": -1.9}},
        ],
    )
    result = normalise(panel)
    assert sorted((f.attrs["site"], f.value_num) for f in result.facts) == [("hip", -1.9), ("lumbar-spine", -2.8)]
    assert [(c.system, c.code) for c in result.unrecognised] == [(S.LOINC, "38268-9")]


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_mistaken_observations_give_no_facts(status: str) -> None:
    assert (
        normalise(
            observation({"system": S.LOINC, "code": "38267-1"}, status=status, valueQuantity={"value": -2.0})
        ).facts
        == []
    )


def test_augmentation_procedure_with_levels() -> None:
    (fact,) = normalise(
        {
            "resourceType": "Procedure",
            "id": "x",
            "status": "completed",
            "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": S.CPT, "code": "22513"}]},
            "performedPeriod": {"start": "2025-01-02"},
            "bodySite": [{"text": "T12-L1"}],
        }
    ).facts
    assert fact.kind is FactKind.VERTEBRAL_AUGMENTATION
    assert fact.attrs["method"] == "PKP"
    assert fact.attrs["levels"] == ["T12", "L1"]
    assert fact.status == "completed"


def test_condition_by_icd10_prefix_and_refuted_ones_dropped() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": S.ICD10CM, "code": "M80.08XA"}]},
        "onsetDateTime": "2024-11-30",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
    }
    (fact,) = normalise(condition).facts
    assert (fact.kind, fact.status, str(fact.effective_date)) == (FactKind.VERTEBRAL_FRACTURE, "active", "2024-11-30")
    refuted = {
        **condition,
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
        },
    }
    assert normalise(refuted).facts == []


@pytest.mark.parametrize(("code", "stage"), [("N18.4", 4), ("N18.32", 3), ("N186", 5)])
def test_ckd_stage(code: str, stage: int) -> None:
    (fact,) = normalise(
        {
            "resourceType": "Condition",
            "id": "c",
            "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": S.ICD10CM, "code": code}]},
        }
    ).facts
    assert fact.attrs["stage"] == stage


def test_medication_events_and_a_referenced_medication() -> None:
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "Prolia 60 mg/mL"}}
    admin = {
        "resourceType": "MedicationAdministration",
        "id": "a",
        "status": "completed",
        "medicationReference": {"reference": "Medication/m1"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-05-01T10:00:00+02:00",
    }
    result = normalise(admin, {"Medication/m1": medication})
    (fact,) = result.facts
    assert fact.attrs == {"drug": "denosumab-60mg", "event": "administration", "dose_mg": 60.0}
    assert result.medication_ref == "Medication/m1"
    # Without the Medication the drug is unknown: no fact yet, and the dependency is recorded.
    unresolved = normalise(admin)
    assert unresolved.facts == []
    assert unresolved.medication_ref == "Medication/m1"


def test_contained_medication_and_request_details() -> None:
    request = {
        "resourceType": "MedicationRequest",
        "id": "r",
        "status": "stopped",
        "intent": "order",
        "contained": [
            {"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": S.ATC, "code": "M05BX04"}]}}
        ],
        "medicationReference": {"reference": "#med"},
        "subject": {"reference": "Patient/p"},
        "authoredOn": "2024-01-10",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "mo"}},
                "doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}],
            }
        ],
    }
    (fact,) = normalise(request).facts
    assert fact.status == "stopped"
    assert fact.attrs["drug"] == "denosumab-60mg"
    assert fact.attrs["event"] == "request"
    assert fact.attrs["intent"] == "order"
    assert fact.attrs["interval_days"] == pytest.approx(182.625)


def test_entered_in_error_dose_gives_no_fact() -> None:
    admin = {
        "resourceType": "MedicationAdministration",
        "id": "a",
        "status": "entered-in-error",
        "medicationCodeableConcept": {"text": "denosumab 60 mg"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-05-01",
    }
    assert normalise(admin).facts == []


def test_patient_demographics() -> None:
    facts = normalise(
        {
            "resourceType": "Patient",
            "id": "p",
            "gender": "female",
            "birthDate": "1944",
            "deceasedDateTime": "2025-02-03",
        }
    ).facts
    assert {f.kind for f in facts} == {FactKind.BIRTH_DATE, FactKind.SEX, FactKind.DECEASED}


def test_a_local_code_map_adds_codes_without_code_changes(tmp_path: Path) -> None:
    mapping = tmp_path / "codes.csv"
    mapping.write_text(
        "# St Example hospital\n"
        "system,code,target_system,target_code,note\n"
        "urn:oid:1.2.3.4,HU-VERT,https://refracture.dev/fhir/CodeSystem/measure,vertebral-hu,CT attenuation\n"
        "urn:oid:1.2.3.4,DXA-LS-T,http://loinc.org,38267-1,\n",
        encoding="utf-8",
    )
    terminology = Terminology(load_code_map(mapping))
    (fact,) = normalise(
        observation({"system": "urn:oid:1.2.3.4", "code": "DXA-LS-T"}, valueQuantity={"value": -3.0}),
        terminology=terminology,
    ).facts
    assert fact.kind is FactKind.DXA_T_SCORE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("system,code,target_system,target_code\nx,1,http://loinc.org,\n", "required"),
        ("system,code,target_system,target_code\nx,1,http://loinc.org,0000-0\n", "not a code refracture knows"),
    ],
)
def test_a_bad_code_map_is_refused_at_start(tmp_path: Path, content: str, message: str) -> None:
    mapping = tmp_path / "codes.csv"
    mapping.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_code_map(mapping)
