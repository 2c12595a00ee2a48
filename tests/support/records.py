"""FHIR records for the clinical use cases' unit tests: the scenarios of tests/integration/test_alerts.py and
test_writeback.py (a vertebral augmentation, a DXA or CT, denosumab doses; a treatment gap)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

__all__ = [
    "ZOLEDRONIC",
    "administration",
    "bundle",
    "ct_augmentation",
    "denosumab_patient",
    "gap_patient",
    "kyphoplasty",
    "patient",
    "statement",
    "t_score",
]

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


def kyphoplasty(pid: str, day: date, level: str | None = "L1") -> dict[str, Any]:
    """A completed kyphoplasty (CPT 22514), at a vertebral level unless ``level`` is None."""
    return {
        "resourceType": "Procedure",
        "id": f"{pid}-pkp",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22514"}]},
        "performedDateTime": day.isoformat(),
        **({"bodySite": [{"text": level}]} if level is not None else {}),
    }


def augmentation(pid: str, day: date) -> list[dict[str, Any]]:
    """A kyphoplasty at L1 and a DXA T-score of -3.1 the same day."""
    return [kyphoplasty(pid, day), t_score(f"{pid}-dxa", -3.1, pid, day.isoformat())]


def t_score(
    oid: str, value: float = -2.5, pid: str = "p1", day: str | None = "2026-05-01", **extra: Any
) -> dict[str, Any]:
    """A final DXA T-score Observation (LOINC 38267-1); undated when ``day`` is None."""
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
        "subject": {"reference": f"Patient/{pid}"},
        **({"effectiveDateTime": day} if day is not None else {}),
        "valueQuantity": {"value": value, "unit": "{T-score}"},
        **extra,
    }


def ct_augmentation(pid: str, operation_day: date, hu: float, ct_day: date | None = None) -> list[dict[str, Any]]:
    """A patient (born 1944) after a vertebral augmentation at T12, with the vertebra's Hounsfield units from a CT
    (the operation's day unless said otherwise)."""
    subject = {"reference": f"Patient/{pid}"}
    return [
        {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1944-04-04"},
        {
            "resourceType": "Procedure",
            "id": f"{pid}-op",
            "status": "completed",
            "subject": subject,
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22513"}]},
            "performedDateTime": operation_day.isoformat(),
            "bodySite": [{"text": "T12"}],
        },
        {
            "resourceType": "Observation",
            "id": f"{pid}-hu",
            "status": "final",
            "subject": subject,
            "code": {"coding": [{"system": "https://refracture.dev/fhir/CodeSystem/measure", "code": "vertebral-hu"}]},
            "effectiveDateTime": (ct_day or operation_day).isoformat(),
            "bodySite": {"text": "T12"},
            "valueQuantity": {"value": hu, "unit": "HU", "code": "[hnsf'U]", "system": "http://unitsofmeasure.org"},
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
        out.append(egfr_result(pid, egfr, egfr_day or operation_day))
    return out


def egfr_result(pid: str, value: float, day: date, rid: str | None = None) -> dict[str, Any]:
    """An eGFR (LOINC 98979-8, mL/min/1.73 m2) of a day; its id ``<pid>-egfr`` unless given."""
    return {
        "resourceType": "Observation",
        "id": rid or f"{pid}-egfr",
        "status": "final",
        "subject": {"reference": f"Patient/{pid}"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {"value": value, "unit": "mL/min/{1.73_m2}"},
    }
