"""Synthetic patients with known FLS-measure answers (docs/measures.md): the timelines the measure tests load as
FHIR transaction Bundles, through the API like an EHR would."""

from __future__ import annotations

from datetime import date
from typing import Any

Timeline = tuple[str, str, str, date, date | None, list[date]]


def patient_bundle(
    pid: str, site: str, born: str, operated: date, dxa: date | None, doses: list[date]
) -> dict[str, Any]:
    """A transaction Bundle: the patient at a site, a kyphoplasty, a DXA and denosumab doses."""
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": "female",
            "birthDate": born,
            "managingOrganization": {"reference": f"Organization/{site}"},
        },
        {
            "resourceType": "Procedure",
            "id": f"{pid}-pkp",
            "status": "completed",
            "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "22514"}]},
            "performedDateTime": operated.isoformat(),
        },
    ]
    if dxa is not None:
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-dxa",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": dxa.isoformat(),
                "valueQuantity": {"value": -2.9, "unit": "{T-score}"},
            }
        )
    for n, day in enumerate(doses):
        resources.append(
            {
                "resourceType": "MedicationAdministration",
                "id": f"{pid}-dmab-{n}",
                "status": "completed",
                "medicationCodeableConcept": {"text": "1 ML denosumab 60 MG/ML Prefilled Syringe"},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": day.isoformat(),
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
        ],
    }


# The timelines and what they make (docs/measures.md):
# n1 north: identified 2025-01-10, DXA day 22, denosumab day 10 and day 196 (186 days: on time), on time at day 365.
# n2 north: identified 2025-01-15, nothing since.
# s1 south: identified 2025-01-20, denosumab day 5 only: treated, stopped (not adherent at day 365).
# s2 south: 35 at the operation: not identified.
TIMELINES: list[Timeline] = [
    ("n1", "north-hospital", "1945-03-01", date(2025, 1, 10), date(2025, 2, 1), [date(2025, 1, 20), date(2025, 7, 25)]),
    ("n2", "north-hospital", "1945-03-01", date(2025, 1, 15), None, []),
    ("s1", "south", "1945-03-01", date(2025, 1, 20), None, [date(2025, 1, 25)]),
    ("s2", "south", "1990-03-01", date(2025, 1, 22), None, []),
]
