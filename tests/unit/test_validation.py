"""The validator: fhir.resources' verdict plus the JSON types, required codes and limits it leaves out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.fhir.validation import validate_resource
from tests.support.paths import FIXTURES

EXAMPLES = sorted((FIXTURES / "hl7-r4").glob("*.json")) + sorted((FIXTURES / "synthea-full").glob("*.json"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name[:40] for p in EXAMPLES])
def test_real_examples_are_valid(path: Path) -> None:
    assert validate_resource(json.loads(path.read_bytes())) == []


def expressions(resource: Any) -> list[str]:
    return [issue.expression or "" for issue in validate_resource(resource)]


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
        ({"resourceType": "Patient", "active": 1}, "Patient.active"),
        ({"resourceType": "Patient", "gender": "f"}, "Patient.gender"),
        ({"resourceType": "Patient", "name": []}, "Patient.name"),
        ({"resourceType": "Patient", "name": [{"family": ""}]}, "Patient.name[0].family"),
        ({"resourceType": "Patient", "name": [{"given": ["a", None]}]}, "Patient.name[0].given[1]"),
        ({"resourceType": "Patient", "name": {"family": "x"}}, "Patient.name"),
        ({"resourceType": "Patient", "gender": ["female"]}, "Patient.gender"),
        ({"resourceType": "Patient", "id": "x" * 65}, "Patient.id"),
        ({"resourceType": "Patient", "id": "a/b"}, "Patient.id"),
        ({"resourceType": "Patient", "birthDate": None}, "Patient.birthDate"),
        ({"resourceType": "Patient", "unknown": 1}, "Patient.unknown"),
        ({"resourceType": "Observation", "status": "final"}, "Observation.code"),
        ({"resourceType": "Observation", "status": "done", "code": {"text": "x"}}, "Observation.status"),
        (
            {
                "resourceType": "Condition",
                "subject": {"reference": "Patient/1"},
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "gone"}]
                },
            },
            "Condition.clinicalStatus",
        ),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "wish",
                "medicationCodeableConcept": {"text": "x"},
                "subject": {"reference": "Patient/1"},
            },
            "MedicationRequest.intent",
        ),
        (
            {"resourceType": "Patient", "contained": [{"resourceType": "Medication", "status": "gone"}]},
            "Patient.contained[0].status",
        ),
    ],
)
def test_invalid_resources_name_the_element(resource: dict[str, Any], expression: str) -> None:
    assert expression in expressions(resource)


def test_a_bundle_entry_path_prefixes_the_expression() -> None:
    issues = validate_resource({"resourceType": "Patient", "active": "yes"}, "Bundle.entry[4].resource")
    assert [i.expression for i in issues] == ["Bundle.entry[4].resource.active"]


def test_not_a_resource() -> None:
    assert validate_resource([1])[0].code == "structure"
    assert validate_resource({"id": "x"})[0].text == "resourceType is missing"
    assert validate_resource({"resourceType": "Quantity"})[0].code == "not-supported"


def test_deep_extension_nesting_is_refused_not_crashed() -> None:
    extension: dict[str, Any] = {"url": "http://x", "valueString": "v"}
    for _ in range(100):
        extension = {"url": "http://x", "extension": [extension]}
    issues = validate_resource({"resourceType": "Patient", "extension": [extension]})
    assert issues
