"""Benchmark inputs: 1,000-entry transaction Bundles of realistic resources, with fresh ids for every round."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from service.devtools.synth import patient_bundle
from service.fhir.jsonio import dumps

__all__ = ["mixed_bundles", "observation_bundles"]


def observation_bundles(count: int, size: int, prefix: str) -> list[bytes]:
    """Bundles of DXA T-score Observations (PUT entries), ten per patient."""
    out = []
    for b in range(count):
        entries = []
        for n in range(size):
            oid = f"{prefix}-b{b}-o{n}"
            resource = {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging"}
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {
                            "system": "http://loinc.org",
                            "code": "38267-1",
                            "display": "DXA Lumbar spine [T-score] Bone density",
                        }
                    ]
                },
                "subject": {"reference": f"Patient/{prefix}-b{b}-p{n // 10}"},
                "effectiveDateTime": f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
                "valueQuantity": {
                    "value": round(-3.5 + (n % 30) / 10, 1),
                    "unit": "{T-score}",
                    "system": "http://unitsofmeasure.org",
                    "code": "{T-score}",
                },
            }
            entries.append(
                {
                    "fullUrl": f"Observation/{oid}",
                    "resource": resource,
                    "request": {"method": "PUT", "url": f"Observation/{oid}"},
                }
            )
        out.append(dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    return out


def mixed_bundles(count: int, size: int, prefix: str) -> list[bytes]:
    """Bundles of whole synthetic patients (Patient, Condition, Procedure, Observations, medicines)."""
    rng = random.Random(11)
    today = date(2026, 11, 1)
    out = []
    number = 0
    for _ in range(count):
        entries: list[dict[str, Any]] = []
        while len(entries) < size:
            number += 1
            entries.extend(patient_bundle(rng, number, today, prefix)["entry"])
        out.append(dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries[:size]}))
    return out
