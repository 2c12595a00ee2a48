"""Literal references: which resource a reference points at, and whose patient a resource belongs to."""

from __future__ import annotations

import re
from typing import Any, Final

from service.fhir.resource_types import PATIENT_ELEMENT

__all__ = ["patient_of", "split_reference"]

# Relative "Type/id", optionally with /_history/v, or the same at the end of an absolute URL.
# Bounded quantifiers (no resource type name is longer than 64 characters): linear time on any reference.
_LITERAL: Final = re.compile(r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


def split_reference(reference: Any) -> tuple[str, str] | None:
    """(type, id) of a literal reference string, or None for contained, urn: or conditional references."""
    if not isinstance(reference, str) or reference.startswith(("#", "urn:")) or "?" in reference:
        return None
    match = _LITERAL.search(reference)
    return (match.group(1), match.group(2)) if match else None


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient a resource belongs to, or None when it names none (or not by a literal reference)."""
    resource_type = resource.get("resourceType")
    if resource_type == "Patient":
        resource_id = resource.get("id")
        return resource_id if isinstance(resource_id, str) else None
    element = PATIENT_ELEMENT.get(str(resource_type))
    if element is None:
        return None
    target = resource.get(element)
    if not isinstance(target, dict):
        return None
    parsed = split_reference(target.get("reference"))
    if parsed is None or parsed[0] != "Patient":
        return None
    return parsed[1]
