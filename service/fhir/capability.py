"""The CapabilityStatement: what this server really does (a test calls every interaction it lists)."""

from __future__ import annotations

from typing import Any, Final

from service.fhir.r4 import FHIR_VERSION
from service.fhir.resource_types import INPUT_TYPES

__all__ = ["READ_ONLY_TYPES", "capability_statement"]

SOFTWARE_VERSION: Final = "0.1.0"
# The date this statement last changed; bump it with the capabilities.
STATEMENT_DATE: Final = "2026-12-05"

# Types refracture serves but does not take in.
READ_ONLY_TYPES: Final[dict[str, list[dict[str, str]]]] = {
    # The FLS quality measures (docs/measures.md): the fls-lead role or administrators.
    "Measure": [{"name": "url", "type": "uri", "documentation": "The canonical URL of the Measure"}],
    "MeasureReport": [
        {"name": "measure", "type": "reference", "documentation": "The Measure's id or canonical URL"},
        {
            "name": "period",
            "type": "date",
            "documentation": "geYYYY-MM-DD: starts on or after; leYYYY-MM-DD: ends on or before",
        },
        {
            "name": "site",
            "type": "token",
            "documentation": "One site (REFRACTURE_SITES); a site-limited caller sees only theirs",
        },
    ],
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
    "Task": [
        {"name": "subject", "type": "reference", "documentation": "Patient/{id}: the Tasks of the patient's alerts"},
        {"name": "patient", "type": "reference", "documentation": "The same as subject"},
        {"name": "status", "type": "token", "documentation": "Task statuses, comma-separated (with a patient)"},
        {
            "name": "identifier",
            "type": "token",
            "documentation": "https://refracture.dev/fhir/sid/task|{value}: one alert's Task",
        },
    ],
}
# Operations on the read-only types.
OPERATIONS: Final[dict[str, list[dict[str, str]]]] = {
    "Measure": [
        {
            "name": "evaluate-measure",
            "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
            "documentation": "GET Measure/[id]/$evaluate-measure?periodStart=&periodEnd=[&site=]: a summary "
            "MeasureReport computed from the stored data (kept, and served at /fhir/MeasureReport)",
        }
    ]
}


# The scopes refracture checks, per type and interaction (service/security/principal.py); docs/security.md.
SECURITY_DESCRIPTION = (
    "OAuth 2.0 bearer tokens (JWT) from the hospital's issuer. SMART scopes are checked per resource type and "
    "interaction: v2 system/{type}.c (POST), .u (PUT), .r (read), .s (search), e.g. system/Observation.cu, "
    "system/RiskAssessment.rs; v1 .read (= rs), .write (= cud) and .* are accepted. patient/ scopes bind the token "
    "to its launch patient (the patient claim): reads of other patients and population-wide lists are refused. "
    "Scopes with constraints (?category=...) are refused, not evaluated. system/metrics.read reads /metrics only. "
    "Roles (integration-client, care-coordinator, administrator, metrics-reader, fls-lead) come from the roles claim; "
    "a sites claim limits a person to the patients of those sites (Patient.managingOrganization)."
)


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
            **({"operation": OPERATIONS[resource_type]} if resource_type in OPERATIONS else {}),
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
                    "singly or in transaction/batch Bundles, and serves refracture's own CodeSystems and its "
                    "RiskAssessments, CarePlans and Tasks (one per alert)."
                ),
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": SECURITY_DESCRIPTION,
                },
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
