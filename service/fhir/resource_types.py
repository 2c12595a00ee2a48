"""Which resource types refracture takes in and which it produces (docs/sources/contract.md, 'HTTP')."""

from __future__ import annotations

from typing import Final

INPUT_TYPES: Final = frozenset(
    {
        "Patient",
        "Observation",
        "Procedure",
        "Condition",
        "MedicationRequest",
        "MedicationAdministration",
        "MedicationStatement",
        "MedicationDispense",
        "Medication",
    }
)

# Types whose resources belong to one patient, and the element that names the patient.
PATIENT_ELEMENT: Final[dict[str, str]] = {
    "Observation": "subject",
    "Procedure": "subject",
    "Condition": "subject",
    "MedicationRequest": "subject",
    "MedicationAdministration": "subject",
    "MedicationStatement": "subject",
    "MedicationDispense": "subject",
}

MEDICATION_USE_TYPES: Final = frozenset(
    {"MedicationRequest", "MedicationAdministration", "MedicationStatement", "MedicationDispense"}
)
