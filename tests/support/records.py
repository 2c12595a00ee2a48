"""FHIR records for the clinical use cases' unit tests: the scenarios of tests/integration/test_alerts.py and
test_writeback.py (a vertebral augmentation, a DXA or CT, denosumab doses; a treatment gap)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

__all__ = ["ZOLEDRONIC", "administration", "bundle", "denosumab_patient", "gap_patient", "patient", "statement"]

DENOSUMAB = "1 ML denosumab 60 MG/ML Prefilled Syringe"
ZOLEDRONIC = "zoledronic acid 5 MG/100 ML Injection"


def bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs the resources."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }


def patient(pid: str, organization: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1946-02-03"}
    if organization:
        resource["managingOrganization"] = {"reference": organization}
    return resource


def augmentation(pid: str, day: date) -> list[dict[str, Any]]:
    """A kyphoplasty at L1 and a DXA T-score of -3.1 the same day."""
    subject = {"reference": f"Patient/{pid}"}
    return [
        {
            "resourceType": "Procedure",
            "id": f"{pid}-pkp",
            "status": "completed",
            "subject": subject,
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22514"}]},
            "performedDateTime": day.isoformat(),
            "bodySite": [{"text": "L1"}],
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-dxa",
            "status": "final",
            "subject": subject,
            "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
            "effectiveDateTime": day.isoformat(),
            "valueQuantity": {"value": -3.1, "unit": "{T-score}"},
        },
    ]


def administration(pid: str, aid: str, day: date, text: str = DENOSUMAB) -> dict[str, Any]:
    """A completed MedicationAdministration (denosumab unless ``text`` says otherwise)."""
    return {
        "resourceType": "MedicationAdministration",
        "id": f"{pid}-{aid}",
        "status": "completed",
        "medicationCodeableConcept": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": day.isoformat(),
    }


def denosumab_patient(
    pid: str, dose_day: date, operation_day: date | None = None, organization: str | None = None
) -> list[dict[str, Any]]:
    """A patient on denosumab after a kyphoplasty (a month before the dose unless said otherwise)."""
    operation_day = operation_day or dose_day - timedelta(days=30)
    return [patient(pid, organization), *augmentation(pid, operation_day), administration(pid, "dmab-1", dose_day)]


def statement(pid: str, since: date, text: str = "alendronate 70 mg tablet") -> dict[str, Any]:
    """An active MedicationStatement: taking a drug since a day."""
    return {
        "resourceType": "MedicationStatement",
        "id": f"{pid}-aln",
        "status": "active",
        "subject": {"reference": f"Patient/{pid}"},
        "medicationCodeableConcept": {"text": text},
        "effectivePeriod": {"start": since.isoformat()},
    }


def gap_patient(
    pid: str, operation_day: date, egfr: float | None, egfr_day: date | None = None
) -> list[dict[str, Any]]:
    """A kyphoplasty with a DXA and no treatment; optionally an eGFR (mL/min/1.73 m2)."""
    out = [patient(pid), *augmentation(pid, operation_day)]
    if egfr is not None:
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-egfr",
                "status": "final",
                "subject": {"reference": f"Patient/{pid}"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
                "effectiveDateTime": (egfr_day or operation_day).isoformat(),
                "valueQuantity": {"value": egfr, "unit": "mL/min/{1.73_m2}"},
            }
        )
    return out
