"""The CapabilityStatement: what this server really does (a test calls every interaction it lists)."""

from __future__ import annotations

from typing import Any, Final

from service.fhir.r4 import FHIR_VERSION
from service.fhir.resource_types import INPUT_TYPES

__all__ = ["READ_ONLY_TYPES", "capability_statement"]

SOFTWARE_VERSION: Final = "0.1.0"
# The date this statement last changed; bump it with the capabilities.
STATEMENT_DATE: Final = "2026-11-25"

# Types refracture serves but does not take in.
READ_ONLY_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    "CodeSystem": [{"name": "url", "type": "uri", "documentation": "The canonical URL of the CodeSystem"}],
    "RiskAssessment": [
        {
            "name": "subject",
            "type": "reference",
            "documentation": "Patient/{id}: the patient's assessments, newest first",
        },
        {"name": "patient", "type": "reference", "documentation": "The same as subject"},
    ],
    "CarePlan": [
        {"name": "subject", "type": "reference", "documentation": "Patient/{id}: the patient's one active CarePlan"},
        {"name": "patient", "type": "reference", "documentation": "The same as subject"},
    ],
}


def capability_statement(base_url: str) -> dict[str, Any]:
    """The server's CapabilityStatement for this FHIR base URL."""
    resources: list[dict[str, Any]] = [
        {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "create"}, {"code": "update"}],
            # The EHR's ids are kept: PUT to a new id creates it.
            "versioning": "versioned-update",
            "readHistory": False,
            "updateCreate": True,
            "conditionalCreate": False,
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
        }
        for resource_type in sorted(INPUT_TYPES)
    ]
    resources += [
        {
            "type": resource_type,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": params,
        }
        for resource_type, params in sorted(READ_ONLY_TYPES.items())
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "refracture",
        "kind": "instance",
        "software": {"name": "refracture", "version": SOFTWARE_VERSION},
        "implementation": {"description": "refracture FHIR endpoint", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Takes the EHR's Patients, Observations, Procedures, Conditions and medication resources, "
                    "singly or in transaction/batch Bundles, and serves refracture's own CodeSystems."
                ),
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
