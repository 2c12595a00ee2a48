"""Planning transaction and batch Bundles."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.fhir.bundle import plan_bundle
from service.platform.errors import Problem, RefractureError


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


# --- entries of types refracture does not use (issue 13) ---------------------------------------------------------

P_URL = "urn:uuid:11111111-1111-1111-1111-111111111111"
E_URL = "urn:uuid:33333333-3333-3333-3333-333333333333"
ENCOUNTER = {"resourceType": "Encounter", "id": "enc-1", "status": "finished", "class": {"code": "AMB"}}


def synthea_like(kind: str, encounter: dict[str, Any] | None = None) -> dict[str, Any]:
    obs = {**copy.deepcopy(OBS), "encounter": {"reference": E_URL}}
    return bundle(
        kind,
        {"fullUrl": P_URL, "resource": {**PATIENT, "id": "p"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": E_URL, "resource": encounter or dict(ENCOUNTER), "request": {"method": "POST", "url": "Encounter"}},
        {
            "fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
            "resource": obs,
            "request": {"method": "POST", "url": "Observation"},
        },
    )


def test_an_unused_type_is_skipped_and_references_to_it_name_the_ehrs_resource() -> None:
    planned = plan_bundle(synthea_like("transaction"), 100)
    patient, encounter, obs = planned.entries
    assert encounter.skipped
    assert encounter.error is None
    assert (encounter.resource_type, encounter.resource_id) == ("Encounter", "enc-1")
    assert not patient.skipped
    assert not obs.skipped
    assert obs.resource is not None
    assert obs.resource["subject"]["reference"] == "Patient/p"
    assert obs.resource["encounter"]["reference"] == "Encounter/enc-1"
    assert planned.skipped_types() == {"Encounter": 1}


@pytest.mark.parametrize("encounter_id", [None, "..", "a/b", 7])
def test_a_skipped_entry_without_a_usable_id_leaves_references_to_it_as_they_were(encounter_id: Any) -> None:
    encounter = {k: v for k, v in ENCOUNTER.items() if k != "id"}
    if encounter_id is not None:
        encounter["id"] = encounter_id
    obs = plan_bundle(synthea_like("transaction", encounter), 100).entries[2]
    assert obs.resource is not None
    assert obs.resource["encounter"]["reference"] == E_URL


def test_a_skipped_entry_is_not_validated_nor_refused_as_conditional() -> None:
    # Nothing of it is stored: an Encounter refracture would find wanting does not fail the Bundle.
    planned = plan_bundle(
        bundle(
            "transaction",
            {
                "resource": {"resourceType": "Encounter", "status": "nonsense"},
                "request": {"method": "POST", "url": "Encounter"},
            },
            {
                "resource": {"resourceType": "Practitioner"},
                "request": {"method": "PUT", "url": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1"},
            },
            {
                "resource": {"resourceType": "Organization"},
                "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=x|1"},
            },
        ),
        100,
    )
    assert [e.skipped for e in planned.entries] == [True, True, True]
    assert planned.skipped_types() == {"Encounter": 1, "Practitioner": 1, "Organization": 1}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        # A URL about another type, a type FHIR does not define: the ordinary checks answer.
        ({"resource": ENCOUNTER, "request": {"method": "PUT", "url": "Patient/enc-1"}}, Problem.INVALID),
        (
            {"resource": {"resourceType": "Spaceship", "id": "s"}, "request": {"method": "PUT", "url": "Spaceship/s"}},
            Problem.INVALID,
        ),
        (
            {"resource": {"resourceType": "Parameters"}, "request": {"method": "POST", "url": "ValueSet/$lookup"}},
            Problem.INVALID,
        ),
        ({"request": {"method": "DELETE", "url": "Encounter/enc-1"}}, Problem.NOT_ALLOWED),
        # A Bundle inside a Bundle is an envelope: refused, never skipped unread.
        (
            {
                "resource": {"resourceType": "Bundle", "id": "b", "type": "collection"},
                "request": {"method": "PUT", "url": "Bundle/b"},
            },
            Problem.UNPROCESSABLE,
        ),
    ],
)
def test_what_is_wrong_with_an_entry_beside_its_type_is_still_refused(entry: dict[str, Any], problem: Problem) -> None:
    with pytest.raises(RefractureError) as caught:
        plan_bundle(bundle("transaction", entry), 100)
    assert caught.value.problem is problem


def test_a_strict_site_refuses_unused_types_with_a_count_first() -> None:
    with pytest.raises(RefractureError) as caught:
        plan_bundle(synthea_like("transaction"), 100, skip_unused=False)
    assert caught.value.problem is Problem.UNPROCESSABLE
    summary, entry = caught.value.issues
    assert summary.expression == "Bundle.entry"
    assert summary.text.startswith("1 entry has a type refracture does not take: 1 Encounter;")
    assert "REFRACTURE_UNKNOWN_RESOURCE_TYPES=error" in summary.text
    assert entry.expression == "Bundle.entry[1].resource.resourceType"
    assert "refracture does not take Encounter resources" in entry.text


def test_in_a_batch_references_to_skipped_entries_stay_and_break_nothing() -> None:
    batch = synthea_like("batch")
    obs = batch["entry"][2]["resource"]
    obs["subject"] = {"reference": "Patient/p"}
    planned = plan_bundle(batch, 100)
    _, encounter, kept = planned.entries
    assert encounter.skipped
    assert kept.error is None
    assert kept.resource is not None
    assert kept.resource["encounter"]["reference"] == E_URL  # a batch resolves no placeholders
    strict = plan_bundle(synthea_like("batch"), 100, skip_unused=False)
    assert strict.entries[1].error is not None
    assert strict.entries[1].error.problem is Problem.UNPROCESSABLE
    # The Observation's placeholder of its Patient is refused as before; that of the Encounter is not the reason.
    assert strict.entries[2].error is not None
    assert [i.expression for i in strict.entries[2].error.issues] == ["Bundle.entry[2].resource.subject.reference"]


def test_a_large_bundle_of_references_to_skipped_entries_is_planned() -> None:
    # 4,000 skipped entries and 1,000 Observations naming four of them each: one dict of placeholders and one walk
    # per kept resource (no search per reference), so this stays a matter of the validator's time per entry.
    skipped = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
            "resource": {"resourceType": "Claim", "id": f"c{n}"},
            "request": {"method": "POST", "url": "Claim"},
        }
        for n in range(4000)
    ]
    kept = [
        {
            "resource": {
                **copy.deepcopy(OBS),
                "id": f"o{n}",
                "subject": {"reference": "Patient/p"},
                "derivedFrom": [{"reference": f"urn:uuid:00000000-0000-4000-8000-{4 * n + k:012d}"} for k in range(4)],
            },
            "request": {"method": "PUT", "url": f"Observation/o{n}"},
        }
        for n in range(1000)
    ]
    planned = plan_bundle(bundle("transaction", *skipped, *kept), 5000)
    assert planned.skipped_types() == {"Claim": 4000}
    last = planned.entries[-1].resource
    assert last is not None
    assert [r["reference"] for r in last["derivedFrom"]] == ["Claim/c3996", "Claim/c3997", "Claim/c3998", "Claim/c3999"]
