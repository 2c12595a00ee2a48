"""FHIR R4 builders for the synthetic cohort (service/devtools/synth.py): the resources as an EHR would send them.

Codes are ones refracture recognises (service/fhir/terminology.py, service/fhir/medications.py): LOINC for DXA
and laboratory results, ICD-10-CM for diagnoses, CPT for the augmentation, RxNorm or ATC for medicines, and
refracture's own `measure` CodeSystem for the imaging and surgical measures without a LOINC code.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

from service.fhir import systems as S

__all__ = [
    "EHR_BASE",
    "MRN_SYSTEM",
    "condition",
    "entry",
    "level_site",
    "medication_use",
    "observation",
    "quantity",
]

# fullUrl must be absolute in R4 (Bundle.entry.fullUrl, "the Absolute URL for the resource"); a made-up EHR base
# keeps relative references ("Patient/x") resolving to the entries of the same Bundle.
EHR_BASE: Final = "https://ehr.example.org/fhir"
MRN_SYSTEM: Final = f"{S.SID_BASE}/demo-mrn"
_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"


def entry(resource: dict[str, Any]) -> dict[str, Any]:
    """A transaction entry that PUTs the resource under the EHR's own id (re-sending it is an idempotent no-op)."""
    kind, rid = resource["resourceType"], resource["id"]
    return {
        "fullUrl": f"{EHR_BASE}/{kind}/{rid}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{kind}/{rid}"},
    }


def level_site(*levels: str) -> dict[str, Any]:
    """A bodySite naming vertebral levels in refracture's vertebral-level CodeSystem."""
    return {"coding": [{"system": S.VERTEBRAL_LEVEL, "code": lvl} for lvl in levels], "text": ", ".join(levels)}


def quantity(value: float, unit: str, digits: int = 2) -> dict[str, Any]:
    """A UCUM Quantity."""
    return {"value": round(value, digits), "unit": unit, "system": S.UCUM, "code": unit}


def observation(pid: str, oid: str, coding: dict[str, Any], when: date, category: str, **value: Any) -> dict[str, Any]:
    """A final Observation of the patient; ``value`` holds value[x], bodySite, partOf and the like."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": S.OBSERVATION_CATEGORY, "code": category}]}],
        "code": {"coding": [coding], **({"text": coding["display"]} if "display" in coding else {})},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
    }
    obs.update(value)
    return obs


def condition(
    pid: str,
    suffix: str,
    code: str,
    display: str,
    onset: date,
    *,
    system: str = S.ICD10CM,
    status: str = "active",
    levels: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A confirmed Condition (a problem-list item; an encounter diagnosis when it is a fracture)."""
    category = "encounter-diagnosis" if levels else "problem-list-item"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"{pid}-{suffix}",
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": status}]},
        "verificationStatus": {"coding": [{"system": _VERIFICATION, "code": "confirmed"}]},
        "category": [{"coding": [{"system": _CONDITION_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
    }
    if levels:
        resource["bodySite"] = [level_site(*levels)]
    return resource


def _medication(coding: dict[str, Any], text: str) -> dict[str, Any]:
    return {"coding": [coding], "text": text}


def medication_use(
    kind: str,
    pid: str,
    mid: str,
    when: date,
    coding: dict[str, Any],
    text: str,
    *,
    status: str | None = None,
    dose_mg: float | None = None,
    every: tuple[float, str] | None = None,
    days_supply: int | None = None,
) -> dict[str, Any]:
    """A MedicationAdministration, MedicationDispense, MedicationStatement or MedicationRequest.

    Args:
        kind: the resource type.
        pid: the patient.
        mid: the resource id.
        when: when the dose was given or handed over, or the order authored.
        coding: the medicine's RxNorm or ATC coding.
        text: the product as the EHR names it (strength in the text, as in RxNorm names).
        status: the resource's status; the ordinary one of its kind when omitted.
        dose_mg: the dose given (administrations) or ordered (requests and statements).
        every: the dosing interval as (period, UCUM unit of time: d, wk, mo, a) for requests and statements.
        days_supply: days a dispense covers.
    """
    resource: dict[str, Any] = {
        "resourceType": kind,
        "id": mid,
        "status": status or _DEFAULT_STATUS[kind],
        "medicationCodeableConcept": _medication(coding, text),
        "subject": {"reference": f"Patient/{pid}"},
    }
    dose = quantity(dose_mg, "mg") if dose_mg is not None else None
    if kind == "MedicationAdministration":
        resource["effectiveDateTime"] = when.isoformat()
        if dose:
            resource["dosage"] = {"dose": dose}
    elif kind == "MedicationDispense":
        resource["whenHandedOver"] = when.isoformat()
        if days_supply is not None:
            resource["daysSupply"] = {"value": days_supply, "unit": "d", "system": S.UCUM, "code": "d"}
    else:
        if kind == "MedicationRequest":
            resource["intent"] = "order"
            resource["authoredOn"] = when.isoformat()
        else:
            resource["effectiveDateTime"] = when.isoformat()
        instruction: dict[str, Any] = {"text": text}
        if every is not None:
            instruction["timing"] = {"repeat": {"frequency": 1, "period": every[0], "periodUnit": every[1]}}
        if dose:
            instruction["doseAndRate"] = [{"doseQuantity": dose}]
        resource["dosageInstruction" if kind == "MedicationRequest" else "dosage"] = [instruction]
    return resource


_DEFAULT_STATUS: Final = {
    "MedicationAdministration": "completed",
    "MedicationDispense": "completed",
    "MedicationStatement": "active",
    "MedicationRequest": "active",
}
