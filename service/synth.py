"""A synthetic cohort of patients after vertebral augmentation, as FHIR transaction Bundles (no real people).

Deterministic for a seed. Each patient: demographics, the index fracture and its PVP/PKP, some of DXA,
CT Hounsfield units, cement and alignment measures, comorbidities, and a medication history — denosumab courses
that run on time, run late or stop, zoledronic acid, alendronate, or nothing at all (the treatment gap).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any, Final

from service.fhir import systems as S

__all__ = ["cohort", "patient_bundle"]

MRN_SYSTEM: Final = f"{S.SID_BASE}/demo-mrn"
_FAMILY: Final = ("Testperson", "Synthetic", "Example", "Sample", "Fictional", "Placeholder")
_GIVEN_F: Final = ("Ada", "Berit", "Clara", "Dora", "Edda", "Frida", "Greta", "Hanna", "Ines", "Jola")
_GIVEN_M: Final = ("Arne", "Bruno", "Carl", "Dirk", "Emil", "Fritz", "Gustav", "Hugo", "Ivo", "Jens")
_LEVELS: Final = ("T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4")


def _level_site(level: str) -> dict[str, Any]:
    return {"coding": [{"system": S.VERTEBRAL_LEVEL, "code": level}], "text": level}


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    kind, rid = resource["resourceType"], resource["id"]
    return {
        "fullUrl": f"{kind}/{rid}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{kind}/{rid}"},
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": round(value, 2), "unit": unit, "system": S.UCUM, "code": unit}


def _observation(pid: str, oid: str, coding: dict[str, Any], when: date, category: str, **value: Any) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"system": S.OBSERVATION_CATEGORY, "code": category}]}],
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
    }
    obs.update(value)
    return obs


def _medication_administration(
    pid: str, mid: str, when: date, rxnorm: str, text: str, dose_mg: float
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationAdministration",
        "id": mid,
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": S.RXNORM, "code": rxnorm, "display": text}],
            "text": text,
        },
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat(),
        "dosage": {"dose": {"value": dose_mg, "unit": "mg", "system": S.UCUM, "code": "mg"}},
    }


def patient_bundle(rng: random.Random, number: int, today: date, prefix: str = "synth") -> dict[str, Any]:
    """One synthetic patient's transaction Bundle (PUT entries with EHR-style ids)."""
    pid = f"{prefix}-{number:06d}"
    female = rng.random() < 0.75
    age = rng.randint(55, 92)
    birth = today - timedelta(days=age * 365 + rng.randint(0, 364))
    surgery = today - timedelta(days=rng.randint(20, 1000))
    fracture = surgery - timedelta(days=rng.randint(3, 70))
    level = rng.choice(_LEVELS)
    adjacent = _LEVELS[min(_LEVELS.index(level) + 1, len(_LEVELS) - 1)]
    pkp = rng.random() < 0.55
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": MRN_SYSTEM, "value": f"D{number:06d}"}],
            "name": [{"family": rng.choice(_FAMILY), "given": [rng.choice(_GIVEN_F if female else _GIVEN_M)]}],
            "gender": "female" if female else "male",
            "birthDate": birth.isoformat(),
        },
        {
            "resourceType": "Condition",
            "id": f"{pid}-ovcf",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "code": {
                "coding": [
                    {
                        "system": S.ICD10CM,
                        "code": "M80.08XA",
                        "display": "Age-related osteoporosis with current pathological fracture, vertebra(e), "
                        "initial encounter for fracture",
                    }
                ]
            },
            "bodySite": [_level_site(level)],
            "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": fracture.isoformat(),
        },
        {
            "resourceType": "Procedure",
            "id": f"{pid}-augmentation",
            "status": "completed",
            "code": {
                "coding": [
                    {
                        "system": S.CPT,
                        "code": ("22514" if level.startswith("L") else "22513")
                        if pkp
                        else ("22511" if level.startswith("L") else "22510"),
                    }
                ],
                "text": "Kyphoplasty" if pkp else "Vertebroplasty",
            },
            "subject": {"reference": f"Patient/{pid}"},
            "performedDateTime": surgery.isoformat(),
            "bodySite": [_level_site(level)],
        },
    ]
    measure_day = surgery - timedelta(days=2)
    if rng.random() < 0.7:
        resources.append(
            _observation(
                pid,
                f"{pid}-dxa-ls",
                {"system": S.LOINC, "code": "38267-1", "display": "DXA Lumbar spine [T-score] Bone density"},
                fracture + timedelta(days=rng.randint(-300, 40)),
                "imaging",
                valueQuantity=_quantity(rng.gauss(-2.6, 0.9), "{T-score}"),
            )
        )
    if rng.random() < 0.6:
        for oid, lvl, mean in ((f"{pid}-hu-treated", level, 70.0), (f"{pid}-hu-adjacent", adjacent, 85.0)):
            resources.append(
                _observation(
                    pid,
                    oid,
                    {"system": S.MEASURE, "code": "vertebral-hu"},
                    measure_day,
                    "imaging",
                    valueQuantity=_quantity(max(15.0, rng.gauss(mean, 25.0)), "[hnsf'U]"),
                    bodySite=_level_site(lvl),
                )
            )
    if rng.random() < 0.6:
        resources.append(
            _observation(
                pid,
                f"{pid}-cement-ratio",
                {"system": S.MEASURE, "code": "cement-volume-ratio"},
                surgery,
                "imaging",
                valueQuantity=_quantity(rng.uniform(6.0, 28.0), "%"),
                bodySite=_level_site(level),
                partOf=[{"reference": f"Procedure/{pid}-augmentation"}],
            )
        )
        resources.append(
            _observation(
                pid,
                f"{pid}-cement-leakage",
                {"system": S.MEASURE, "code": "cement-leakage"},
                surgery,
                "imaging",
                valueBoolean=rng.random() < 0.3,
                bodySite=_level_site(level),
                partOf=[{"reference": f"Procedure/{pid}-augmentation"}],
            )
        )
    if rng.random() < 0.4:
        resources.append(
            _observation(
                pid,
                f"{pid}-cobb",
                {"system": S.SNOMED, "code": "285285000", "display": "Cobb angle"},
                measure_day,
                "imaging",
                valueQuantity=_quantity(abs(rng.gauss(8.0, 6.0)), "deg"),
            )
        )
    if rng.random() < 0.2:
        resources.append(
            _condition(
                pid,
                "t2d",
                S.ICD10CM,
                "E11.9",
                "Type 2 diabetes mellitus without complications",
                fracture - timedelta(days=rng.randint(400, 4000)),
            )
        )
    if rng.random() < 0.2:
        resources.append(
            _condition(
                pid,
                "prior-fracture",
                S.ICD10CM,
                "Z87.310",
                "Personal history of (healed) osteoporosis fracture",
                fracture - timedelta(days=rng.randint(400, 3000)),
            )
        )
    resources += _medications(rng, pid, surgery, today)
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_entry(r) for r in resources]}


def _condition(pid: str, suffix: str, system: str, code: str, display: str, onset: date) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"{pid}-{suffix}",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset.isoformat(),
    }


def _medications(rng: random.Random, pid: str, surgery: date, today: date) -> list[dict[str, Any]]:
    roll = rng.random()
    out: list[dict[str, Any]] = []
    if roll < 0.35:
        # Denosumab every 6 months; some courses stop, some doses come late.
        day = surgery + timedelta(days=rng.randint(10, 60))
        stop_after = rng.choice([1, 2, 3, 99])
        for dose in range(40):
            if day > today - timedelta(days=5) or dose >= stop_after:
                break
            out.append(
                _medication_administration(
                    pid,
                    f"{pid}-dmab-{dose}",
                    day,
                    "993452",
                    "1 ML denosumab 60 MG/ML Prefilled Syringe",
                    60.0,
                )
            )
            day += timedelta(days=182 + (rng.randint(0, 120) if rng.random() < 0.2 else rng.randint(-7, 14)))
    elif roll < 0.55:
        day = surgery + timedelta(days=rng.randint(20, 120))
        while day < today:
            out.append(
                _medication_administration(
                    pid, f"{pid}-zol-{day.year}", day, "705824", "zoledronic acid 5 MG/100 ML Injection", 5.0
                )
            )
            day += timedelta(days=365)
    elif roll < 0.7:
        out.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"{pid}-aln",
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": S.RXNORM, "code": "904419", "display": "Alendronic acid 10 MG Oral Tablet"}]
                },
                "subject": {"reference": f"Patient/{pid}"},
                "authoredOn": (surgery + timedelta(days=rng.randint(5, 90))).isoformat(),
            }
        )
    return out


def cohort(size: int, seed: int = 1, today: date | None = None, prefix: str = "synth") -> list[dict[str, Any]]:
    """``size`` synthetic patients' Bundles, the same for the same seed and date."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
    anchor = today or date.today()
    return [patient_bundle(rng, n, anchor, prefix) for n in range(1, size + 1)]
