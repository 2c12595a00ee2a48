"""A worklist to test against: a synthetic cohort plus a few patients made for edge cases, loaded through the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.synth import cohort
from tests.support import records
from tests.support.http import FHIR_JSON
from tests.support.records import administration, kyphoplasty

NOW: Final = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
TODAY: Final = NOW.date()
FHIR = FHIR_JSON


def edge_patient(pid: str, name: dict[str, Any] | None, mrn: str | None, dose_days_ago: int | None) -> dict[str, Any]:
    """A patient after kyphoplasty 40 days before the last dose (or 200 days ago without any drug)."""
    operation = TODAY - timedelta(days=(dose_days_ago or 160) + 40)
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1941-07-30"}
    if name:
        patient["name"] = [name]
    if mrn:
        patient["identifier"] = [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:oid:1.2.3.4.5",
                "value": mrn,
            }
        ]
    resources: list[dict[str, Any]] = [patient, kyphoplasty(pid, operation)]
    if dose_days_ago is not None:
        resources.append(administration(pid, "dmab", TODAY - timedelta(days=dose_days_ago)))
    return records.bundle(resources)


EDGE_PATIENTS: Final = [
    # LIKE's metacharacters in a name and an MRN: a search for them must find them literally.
    edge_patient("edge-percent", {"family": "Per%cent", "given": ["Ada"]}, "MRN_5%", 240),
    # Nothing to show but the id: no name, no MRN.
    edge_patient("edge-anonymous", None, None, 170),
    edge_patient("edge-same-day-1", {"family": "Zeta", "given": ["Ines"]}, "Z-0001", 240),
    edge_patient("edge-same-day-2", {"family": "Zeta", "given": ["Ines"]}, "Z-0002", 240),
]


def load(parts: Parts, client: TestClient, patients: int = 40) -> None:
    """Post the cohort and the edge patients, then assess and evaluate them as the workers would."""
    bundles = cohort(patients, seed=11, today=TODAY) + EDGE_PATIENTS
    ids: list[str] = []
    for bundle in bundles:
        response = client.post("/fhir", content=json.dumps(bundle), headers=FHIR)
        assert response.status_code == 200, response.text
        ids.append(bundle["entry"][0]["resource"]["id"])
    parts.changes.process(ids)
