"""docs/adr/0007: each check service/fhir/validation.py makes beside the fhir.resources model, with the proof that the
model still lets it through. When a new fhir.resources refuses one of these itself, its row fails here: the walk's
check for it can then go."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from service.fhir import r4
from service.fhir.validation import validate_resource

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
OBSERVATION: dict[str, Any] = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}

# What R4 JSON (datatypes.html, json.html) forbids and the R4B models accept.
ACCEPTED_BY_THE_MODEL = {
    "a boolean sent as a string": PATIENT | {"active": "true"},
    "an integer sent as a string": OBSERVATION | {"valueInteger": "5"},
    "a decimal sent as a string": OBSERVATION | {"valueQuantity": {"value": "1.5"}},
    "null for an element": PATIENT | {"gender": None},
    "an empty array": PATIENT | {"name": []},
    "an id over 64 characters": PATIENT | {"id": "a" * 100},
    "an id that is a path segment": PATIENT | {"id": ".."},
    "a code outside a required binding the model truncates": OBSERVATION | {"status": "signed-off"},
    "a Condition clinicalStatus from another system": {
        "resourceType": "Condition",
        "id": "c",
        "subject": {"reference": "Patient/p"},
        "clinicalStatus": {"coding": [{"system": "http://example.org", "code": "active"}]},
    },
    "a decimal no double holds": OBSERVATION | {"valueQuantity": {"value": Decimal("1e400")}},
    "a narrative with script": PATIENT
    | {"text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>x()</script></div>'}},
}


@pytest.mark.parametrize("resource", ACCEPTED_BY_THE_MODEL.values(), ids=ACCEPTED_BY_THE_MODEL.keys())
def test_the_model_lets_it_through_and_the_walk_refuses_it(resource: dict[str, Any]) -> None:
    assert r4.validate_model(resource["resourceType"], resource) == []  # fhir.resources alone: valid
    assert validate_resource(resource)  # refracture: refused, with a FHIRPath
