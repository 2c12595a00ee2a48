"""The intake gate: the one check of a resource that arrives to be stored, whatever brought it.

The FHIR API (POST and PUT), a Bundle's entries, the EHR's event feeds and bulk-import files all pass each resource
through :func:`admit`: valid FHIR R4 (structure, our bindings and invariants), a type refracture takes in, and an id
by the rule of the way it came. What is only about the way it came stays with that way: the URL's shape and the
type it names, Bundle envelopes, skipping the types an export holds but refracture does not use.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from service.fhir.resource_types import INPUT_TYPES
from service.fhir.validation import validate_resource
from service.platform.errors import Problem, RefractureError, refuse

__all__ = ["Admitted", "Ids", "admit"]

_TAKES: Final = ", ".join(sorted(INPUT_TYPES))


class Ids(Enum):
    """Where an admitted resource's id comes from."""

    OWN_OR_NEW = (
        "own-or-new"  # a create: the EHR's own id when the body has one (docs/sources/contract.md), else a new one
    )
    URL = "url"  # PUT /fhir/{type}/{id}: the body's id must be there and be the URL's
    URL_OR_NONE = "url-or-none"  # a Bundle's PUT entry: the body's id, if any, must be the request.url's
    OWN = "own"  # event feeds and bulk files: only the resource says which it is


@dataclass(frozen=True, slots=True)
class Admitted:
    """A resource that passed the gate, and the id it is stored under."""

    resource_type: str
    resource_id: str
    resource: dict[str, Any]


def admit(resource: Any, ids: Ids, *, url_id: str | None = None, path: str | None = None) -> Admitted:
    """Check one incoming resource; raises RefractureError with every issue when it cannot be stored.

    Args:
        resource: the parsed JSON.
        ids: the id rule of the way the resource came (``url_id`` is the id the URL names, for Ids.URL*).
        path: FHIRPath of the resource in what carried it (``Bundle.entry[2].resource``); defaults to its type.
    """
    issues = validate_resource(resource, path)
    if issues:
        raise RefractureError(Problem.INVALID, issues)
    resource_type = str(resource["resourceType"])
    where = path or resource_type
    if resource_type not in INPUT_TYPES:
        raise refuse(
            Problem.UNPROCESSABLE,
            "not-supported",
            f"refracture does not take {resource_type} resources; it takes {_TAKES}",
            f"{where}.resourceType",
        )
    return Admitted(resource_type, _resource_id(resource.get("id"), ids, url_id, where), resource)


def _resource_id(body_id: Any, ids: Ids, url_id: str | None, where: str) -> str:
    own = body_id if isinstance(body_id, str) else None
    if ids is Ids.OWN_OR_NEW:
        return own or str(uuid.uuid4())
    if ids is Ids.OWN:
        if own is None:
            raise refuse(Problem.INVALID, "required", "the resource must carry its id", f"{where}.id")
        return own
    assert url_id is not None, "an id rule of the URL needs the URL's id"
    if own != url_id and (ids is Ids.URL or own is not None):
        text = (
            "the resource's id must be present and equal the id in the URL"
            if ids is Ids.URL
            else "the resource id differs from the id in request.url"
        )
        raise refuse(Problem.INVALID, "invalid", text, f"{where}.id")
    return url_id
