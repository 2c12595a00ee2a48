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


# --- issue 16: interactions, constraints, patient context, sites, metrics -------------------------------------------
def test_v2_scopes_are_checked_per_interaction() -> None:
    from service.security.principal import Permission

    client = principal_from_claims({"sub": "ehr", "scope": "system/Observation.c system/RiskAssessment.s"})
    assert client.may_write("Observation", "c")
    assert not client.may_write("Observation", "u")  # create only: no update
    assert not client.may_read("Observation")
    assert client.may_read("RiskAssessment", Permission.READ_RESULTS, "s")
    assert not client.may_read("RiskAssessment", Permission.READ_RESULTS, "r")  # search, not read
    v1 = principal_from_claims({"sub": "ehr", "scope": "system/Observation.write system/*.read"})
    assert v1.may_write("Observation", "c")
    assert v1.may_write("Observation", "u")
    assert v1.may_read("Patient", Permission.READ_CLINICAL_DATA, "s")


def test_a_constrained_scope_grants_nothing_and_is_named() -> None:
    person = principal_from_claims(
        {"sub": "a", "roles": ["care-coordinator"], "scope": "user/Observation.rs?category=laboratory"}
    )
    assert not person.may_read("Observation")
    assert person.constrained_scopes == ("user/Observation?category=laboratory",)


def test_patient_context_and_sites_come_from_the_claims() -> None:
    from service.security.scoping import scope_of

    launched = principal_from_claims(
        {"sub": "app", "roles": ["care-coordinator"], "scope": "patient/*.read launch/patient", "patient": "A"}
    )
    scope = scope_of(launched, {})
    assert launched.patient_bound
    assert scope.admits("A", None)
    assert not scope.admits("B", None)
    assert not scope.population
    orphan = scope_of(principal_from_claims({"sub": "app", "roles": ["care-coordinator"], "scope": "patient/*.rs"}), {})
    assert not orphan.admits("A", None)

    north = principal_from_claims({"sub": "n", "roles": ["care-coordinator"], "sites": "north east"})
    scope = scope_of(north, {"north": ["Organization/1"]}, glass=["G"])
    assert north.sites == frozenset({"north", "east"})
    assert scope.admits("x", "Organization/1")
    assert scope.admits("y", "Organization/east")  # unmapped site: Organization/{site}
    assert not scope.admits("z", "Organization/north")  # mapped: only its references
    assert scope.admits("G", None)  # broke the glass
    assert scope.population

    nobody = principal_from_claims({"sub": "n", "roles": ["care-coordinator"]})
    assert scope_of(nobody, {}).everyone
    assert not scope_of(nobody, {}, sites_required=True).admits("x", "Organization/1")
    system = principal_from_claims({"sub": "ehr", "scope": "system/*.read"})
    assert scope_of(system, {}, sites_required=True).everyone
    nested = principal_from_claims({"sub": "n", "org": {"sites": ["s1"]}}, sites_claim="org.sites")
    assert nested.sites == frozenset({"s1"})


def test_the_metrics_scope_reads_metrics_and_nothing_else() -> None:
    from service.security.principal import Permission, Role

    prometheus = principal_from_claims({"sub": "prom", "scope": "system/metrics.read"})
    assert prometheus.roles == frozenset({Role.METRICS_READER})
    assert prometheus.may(Permission.READ_METRICS)
    assert not prometheus.may(Permission.READ_CLINICAL_DATA)
    assert not prometheus.may(Permission.WRITE_CLINICAL_DATA)
    admin = principal_from_claims({"sub": "a", "roles": ["administrator"]})
    assert admin.may(Permission.READ_METRICS)
    assert not principal_from_claims({"sub": "c", "roles": ["care-coordinator"]}).may(Permission.READ_METRICS)
