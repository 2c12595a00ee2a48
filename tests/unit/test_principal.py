"""Roles from claims, SMART scopes, and what each allows."""

from __future__ import annotations

import pytest

from service.security.principal import Permission, Role, parse_scopes, principal_from_claims


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("system/Observation.write", [("system", "Observation", False, True)]),
        ("system/*.read", [("system", "*", True, False)]),
        ("system/*.*", [("system", "*", True, True)]),
        ("system/Patient.cruds", [("system", "Patient", True, True)]),
        ("system/Patient.rs", [("system", "Patient", True, False)]),
        ("system/Patient.cu", [("system", "Patient", False, True)]),
        # A v2 constraint is not evaluated, so the scope grants nothing (refused rather than widened).
        ("user/Observation.rs?category=laboratory", [("user", "Observation", False, False)]),
        ("openid profile fhirUser launch/patient", []),
        ("system/observation.read system/Observation.xyz", []),  # not a type; not an access mode
    ],
)
def test_smart_scopes_v1_and_v2(scope: str, expected: list[tuple[str, str, bool, bool]]) -> None:
    assert [(s.context, s.resource_type, s.read, s.write) for s in parse_scopes(scope)] == expected


def test_system_scopes_make_an_integration_client_limited_to_its_types() -> None:
    client = principal_from_claims({"sub": "ehr", "client_id": "ehr", "scope": "system/Observation.write"})
    assert client.roles == {Role.INTEGRATION_CLIENT}
    assert client.kind == "system"
    assert client.client_id == "ehr"
    assert client.may_write("Observation")
    assert not client.may_write("Patient")
    assert not client.may_read("Observation")  # write-only scope
    assert not client.may(Permission.READ_WORKLIST)


def test_roles_come_from_the_configured_claim_and_unknown_roles_are_ignored() -> None:
    person = principal_from_claims({"sub": "p", "roles": ["care-coordinator", "superuser"]})
    assert person.roles == {Role.CARE_COORDINATOR}
    assert person.may(Permission.READ_WORKLIST)
    assert person.may(Permission.ACT_ON_ALERTS)
    assert not person.may_write("Observation")
    assert person.may_read("Observation")  # the evidence behind an alert
    nested = principal_from_claims({"sub": "p", "realm_access": {"roles": ["administrator"]}}, "realm_access.roles")
    assert nested.roles == {Role.ADMINISTRATOR}
    assert nested.may(Permission.ADMINISTER)
    assert not nested.may(Permission.READ_WORKLIST)
    spaced = principal_from_claims({"sub": "p", "roles": "care-coordinator administrator"})
    assert spaced.roles == {Role.CARE_COORDINATOR, Role.ADMINISTRATOR}


def test_no_roles_no_scopes_means_authenticated_only() -> None:
    nobody = principal_from_claims({"sub": "p"})
    assert nobody.permissions == {Permission.AUTHENTICATED}
    assert not nobody.may_read("Patient")
    assert not nobody.may_write("Patient")
