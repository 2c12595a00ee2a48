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


# --- read as a clinician would (issue 14) ---------------------------------------------------------------------
def condition(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/p"},
        "code": {"coding": [{"system": S.ICD10CM, "code": code}]},
        **extra,
    }


def test_a_fracture_is_dated_by_its_onset_only() -> None:
    (fact,) = normalise(condition("M80.08XA", recordedDate="2025-02-01")).facts
    assert fact.effective_date is None  # unknown onset is unknown timing, never the recorded date
    assert fact.attrs["recorded_date"] == "2025-02-01"
    # a comorbidity recorded on a day was known by then
    (diabetes,) = normalise(condition("E11.9", recordedDate="2025-02-01")).facts
    assert str(diabetes.effective_date) == "2025-02-01"


@pytest.mark.parametrize(
    ("code", "encounter"),
    [
        ("M80.08XA", "initial"),
        ("M80.08XD", "subsequent"),
        ("M80.08XG", "subsequent"),
        ("M80.08XK", "subsequent"),
        ("M80.08XP", "subsequent"),
        ("M80.08XS", "sequela"),
        ("S32.000A", "initial"),
        ("M81.0", None),
    ],
)
def test_the_encounter_of_a_fracture_code(code: str, encounter: str | None) -> None:
    (fact,) = normalise(condition(code, onsetDateTime="2025-01-01")).facts
    assert fact.attrs.get("encounter") == encounter


@pytest.mark.parametrize(
    ("code", "kind", "attrs"),
    [
        ("S22.000A", FactKind.VERTEBRAL_FRACTURE, {"traumatic": True}),
        ("S32.010A", FactKind.VERTEBRAL_FRACTURE, {"traumatic": True}),
        ("M84.58XA", FactKind.MALIGNANCY, {"type": "neoplastic-fracture"}),
        ("C90.00", FactKind.MALIGNANCY, {"type": "myeloma"}),
        ("C79.51", FactKind.MALIGNANCY, {"type": "bone-metastasis"}),
    ],
)
def test_traumatic_and_malignant_fracture_codes(code: str, kind: FactKind, attrs: dict[str, Any]) -> None:
    (fact,) = normalise(condition(code, onsetDateTime="2025-01-01")).facts
    assert fact.kind is kind
    assert attrs.items() <= dict(fact.attrs).items()


@pytest.mark.parametrize(
    ("extra", "plane"),
    [
        ({}, None),  # SNOMED 285285000 names no plane
        ({"method": {"text": "Coronal Cobb angle on standing AP radiograph"}}, "coronal"),
        ({"note": [{"text": "degenerative scoliosis, L1-L4"}]}, "coronal"),
        ({"bodySite": {"text": "thoracolumbar kyphosis"}}, "sagittal"),
        ({"code": {"coding": [{"system": S.SNOMED, "code": "285285000"}], "text": "Sagittal Cobb angle"}}, "sagittal"),
    ],
)
def test_the_cobb_angle_plane(extra: dict[str, Any], plane: str | None) -> None:
    resource = observation({"system": S.SNOMED, "code": "285285000"}, valueQuantity={"value": 25, "code": "deg"})
    (fact,) = normalise({**resource, **extra}).facts
    assert fact.attrs.get("plane") == plane
    ours = observation({"system": S.MEASURE, "code": "cobb-angle"}, valueQuantity={"value": 25, "code": "deg"})
    assert normalise(ours).facts[0].attrs["plane"] == "coronal"


@pytest.mark.parametrize("unit", ["SD", "{SD}", "{T-score}", "1", None])
def test_a_t_score_in_standard_deviations_is_accepted(unit: str | None) -> None:
    quantity: dict[str, Any] = {"value": -2.7}
    if unit is not None:
        quantity["unit"] = unit
    (fact,) = normalise(observation({"system": S.LOINC, "code": "38267-1"}, valueQuantity=quantity)).facts
    assert (fact.value_num, fact.attrs.get("unit_problem")) == (-2.7, None)


def test_times_of_day_are_kept_when_given() -> None:
    timed = normalise(
        observation(
            {"system": S.MEASURE, "code": "vertebral-hu"},
            valueQuantity={"value": 80},
            effectiveDateTime="2025-03-04T08:10:00+01:00",
        )
    ).facts[0]
    assert timed.attrs.get("timed") is True
    assert (
        normalise(observation({"system": S.MEASURE, "code": "vertebral-hu"}, valueQuantity={"value": 80}))
        .facts[0]
        .attrs.get("timed")
        is None
    )


def test_glucocorticoid_ingredient_dose_route_and_statement_details() -> None:
    statement = {
        "resourceType": "MedicationStatement",
        "id": "s",
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": S.RXNORM, "code": "312617"}]},
        "subject": {"reference": "Patient/p"},
        "effectivePeriod": {"start": "2024-01-01"},
        "dateAsserted": "2025-02-01",
        "dosage": [{"route": {"text": "oral"}, "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
    }
    (fact,) = normalise(statement).facts
    assert fact.attrs["ingredient"] == "prednisone"
    assert fact.attrs["dose_mg"] == 5.0
    assert fact.attrs["route"] == "oral"
    assert fact.attrs["date_asserted"] == "2025-02-01"
    assert fact.attrs["period"] is True
    epidural = {
        "resourceType": "MedicationAdministration",
        "id": "a",
        "status": "completed",
        "medicationCodeableConcept": {"text": "methylprednisolone acetate 80 mg/mL"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2025-01-01",
        "dosage": {"route": {"coding": [{"display": "Epidural route"}]}, "dose": {"value": 80, "unit": "mg"}},
    }
    (given,) = normalise(epidural).facts
    assert (given.attrs["ingredient"], given.attrs["dose_mg"], given.attrs["route"]) == (
        "methylprednisolone",
        80.0,
        "epidural route",
    )


def test_a_dispense_quantity_and_an_expected_supply_duration_are_kept() -> None:
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "d",
        "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": S.RXNORM, "code": "46041"}]},
        "subject": {"reference": "Patient/p"},
        "whenHandedOver": "2025-01-01",
        "quantity": {"value": 4},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}}}],
    }
    (fact,) = normalise(dispense).facts
    assert (fact.attrs["quantity"], fact.attrs["interval_days"]) == (4.0, 7.0)
    request = {
        "resourceType": "MedicationRequest",
        "id": "r",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": S.RXNORM, "code": "46041"}]},
        "subject": {"reference": "Patient/p"},
        "authoredOn": "2025-01-01",
        "dispenseRequest": {"expectedSupplyDuration": {"value": 84, "code": "d"}},
    }
    assert normalise(request).facts[0].attrs["days_supply"] == 84.0
