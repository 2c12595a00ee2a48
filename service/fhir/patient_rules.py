"""One resource, one patient: no resource names two patients, and a stored resource never changes patient.

Facts, risk and alerts are filed under the patient a resource names (references.patient_of). A resource that
points at a second patient (Observation.subject Patient/A, performer Patient/B), or an update that moves a stored
resource from Patient/A to Patient/B, would put one patient's data into another's record, or leave A's risk drawn
from a measurement that is now B's. Both are refused; the EHR's remedy for a record filed under the wrong patient
is to mark it entered-in-error and send a new one under the right patient.
"""

from __future__ import annotations

from typing import Any, Final

from service.fhir.references import patient_of, split_reference
from service.fhir.resource_types import PATIENT_ELEMENT
from service.platform.errors import Issue

__all__ = ["moved_patient_issues", "other_patient_issues"]

# Elements FHIR defines for pointing at someone else: Patient.link.other (another record of the same person, or a
# related one) and Observation.focus (what the observation is about when not the patient of record: a fetus, a
# mother, a donor). The resource stays filed under its own patient.
_OTHER_PERSON: Final[dict[str, frozenset[str]]] = {
    "Patient": frozenset({"link"}),
    "Observation": frozenset({"focus"}),
}


def other_patient_issues(resource: dict[str, Any], path: str) -> list[Issue]:
    """References to a Patient other than the resource's own (the first one named, when it names none itself),
    outside the elements FHIR defines for other people (Patient.link, Observation.focus).

    Args:
        resource: a resource with its final id and references (placeholders already resolved).
        path: its FHIRPath, e.g. ``Observation`` or ``Bundle.entry[2].resource``.

    Returns:
        One issue per reference to another patient, with the reference's FHIRPath.
    """
    own = patient_of(resource)
    issues: list[Issue] = []
    exempt = _OTHER_PERSON.get(str(resource.get("resourceType")), frozenset())
    stack: list[tuple[Any, str]] = [
        (value, f"{path}.{key}") for key, value in reversed(resource.items()) if key not in exempt
    ]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            target = _patient_target(node.get("reference"))
            if target is not None:
                if own is None:
                    own = target
                elif target != own:
                    issues.append(
                        Issue(
                            "business-rule",
                            f"this resource belongs to Patient/{own} but refers to Patient/{target}: "
                            "a resource may name one patient only",
                            f"{where}.reference",
                        )
                    )
            stack.extend((value, f"{where}.{key}") for key, value in reversed(node.items()) if key != "reference")
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{index}]") for index, item in reversed(list(enumerate(node))))
    return issues


def moved_patient_issues(stored_patient: str | None, resource: dict[str, Any], path: str) -> list[Issue]:
    """Refuse an update that takes a stored resource away from its patient.

    Args:
        stored_patient: the patient of the stored version (None when new, or when it named no patient).
        resource: the new version.
        path: its FHIRPath.

    Returns:
        One issue when the new version names another patient, or none; empty otherwise.
    """
    if stored_patient is None:
        return []  # a new resource, or one that named no patient yet: naming one now moves nothing
    new_patient = patient_of(resource)
    if new_patient == stored_patient:
        return []
    element = PATIENT_ELEMENT.get(str(resource.get("resourceType")), "id")
    resource_name = f"{resource.get('resourceType')}/{resource.get('id')}"
    now = f"Patient/{new_patient}" if new_patient else "no patient"
    return [
        Issue(
            "business-rule",
            f"{resource_name} belongs to Patient/{stored_patient} and cannot move to {now}: mark it "
            "entered-in-error and send the record again, with a new id, under the right patient",
            f"{path}.{element}",
        )
    ]


def _patient_target(reference: Any) -> str | None:
    parsed = split_reference(reference)
    return parsed[1] if parsed is not None and parsed[0] == "Patient" else None
