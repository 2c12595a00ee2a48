"""Planning transaction and batch Bundles."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.errors import Problem, RefractureError
from service.fhir.bundle import plan_bundle


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, **({"entry": list(entries)} if entries else {})}


PATIENT = {"resourceType": "Patient", "gender": "female"}
OBS = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "x"},
    "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
}


def test_placeholders_become_the_assigned_ids() -> None:
    planned = plan_bundle(
        bundle(
            "transaction",
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": {**PATIENT, "id": "ehr-7"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
                "resource": copy.deepcopy(OBS),
                "request": {"method": "POST", "url": "Observation"},
            },
        ),
        100,
    )
    assert planned.entries[0].resource_id == "ehr-7"
    obs = planned.entries[1]
    assert obs.resource is not None
    assert obs.resource["subject"]["reference"] == "Patient/ehr-7"
    assert obs.resource_id  # an id-less POST gets one


def test_batch_entries_stand_alone() -> None:
    planned = plan_bundle(
        bundle(
            "batch",
            {"resource": {**PATIENT, "id": "p"}, "request": {"method": "PUT", "url": "Patient/p"}},
            {"resource": copy.deepcopy(OBS), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "PATCH", "url": "Patient/p"}},
        ),
        100,
    )
    assert planned.entries[0].error is None
    assert planned.entries[1].error is not None
    assert planned.entries[1].error.problem is Problem.UNPROCESSABLE
    assert planned.entries[2].error is not None
    assert planned.entries[2].error.problem is Problem.NOT_ALLOWED


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"resource": {**PATIENT, "id": "p"}, "request": {"method": "PUT", "url": "Observation/p"}}, Problem.INVALID),
        ({"resource": {**PATIENT, "id": "p"}, "request": {"method": "PUT", "url": "Patient/q"}}, Problem.INVALID),
        (
            {"resource": {**PATIENT, "id": "p"}, "request": {"method": "PUT", "url": "Patient?identifier=x"}},
            Problem.UNPROCESSABLE,
        ),
        ({"resource": {**PATIENT, "id": "p"}, "request": {"method": "POST", "url": "Patient/p"}}, Problem.INVALID),
        ({"request": {"method": "PUT", "url": "Patient/p"}}, Problem.INVALID),
        ({"request": {"method": "GET", "url": "Patient?name=x"}}, Problem.UNPROCESSABLE),
    ],
)
def test_bad_entries_fail_a_transaction(entry: dict[str, Any], problem: Problem) -> None:
    with pytest.raises(RefractureError) as caught:
        plan_bundle(bundle("transaction", entry), 100)
    assert caught.value.problem is problem


def test_an_empty_transaction_is_fine() -> None:
    assert plan_bundle(bundle("transaction"), 100).entries == []
