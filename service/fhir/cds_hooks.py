"""CDS Hooks 2.0 at the FHIR boundary: the discovery document and the drugs of draft and prefetched orders.

The services answer from refracture's stored state; prefetch is declared so an EHR can send the patient's active
MedicationRequests with an order hook (a follow-on drug planned there counts), never required
(cds-hooks.hl7.org/2.0, 'Prefetch').
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from service.domain.cds import DraftDrug
from service.fhir.medications import LocalTarget, classify

__all__ = [
    "ORDER_HOOKS",
    "ORDER_SELECT",
    "ORDER_SIGN",
    "PATIENT_VIEW",
    "SERVICES",
    "Service",
    "discovery",
    "draft_drugs",
    "prefetched_drugs",
]

PATIENT_VIEW: Final = "refracture-patient-view"
ORDER_SELECT: Final = "refracture-order-select"
ORDER_SIGN: Final = "refracture-order-sign"
ORDER_HOOKS: Final = frozenset({"order-select", "order-sign"})

_PATIENT: Final = "Patient/{{context.patientId}}"
# Active orders: a follow-on drug ordered elsewhere in the EHR is a plan too.
_MEDICATIONS: Final = "MedicationRequest?patient={{context.patientId}}&status=active"
# Orders that are still a plan for what follows denosumab.
_LIVE_STATUSES: Final = frozenset({"active", "on-hold", "draft"})


@dataclass(frozen=True, slots=True)
class Service:
    """One CDS Service as discovery describes it."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str]


SERVICES: Final[dict[str, Service]] = {
    service.id: service
    for service in (
        Service(
            PATIENT_VIEW,
            "patient-view",
            "refracture: re-fracture risk and open alerts",
            "After vertebral augmentation (PVP/PKP): the patient's 2-year re-fracture risk with its main factors and "
            "missing inputs, and each open refracture alert (denosumab overdue or stopped without a follow-on drug, "
            "post-fracture treatment gap, DXA not done) with the orders that close it.",
            {"patient": _PATIENT},
        ),
        Service(
            ORDER_SELECT,
            "order-select",
            "refracture: denosumab needs a follow-on drug",
            "Warns when denosumab is selected and no follow-on drug (a bisphosphonate, or an anabolic agent) is "
            "planned for when it stops: stopping denosumab without one causes rebound vertebral fractures.",
            {"patient": _PATIENT, "medications": _MEDICATIONS},
        ),
        Service(
            ORDER_SIGN,
            "order-sign",
            "refracture: denosumab needs a follow-on drug",
            "Warns when denosumab is about to be signed and no follow-on drug is planned for when it stops.",
            {"patient": _PATIENT, "medications": _MEDICATIONS},
        ),
    )
}


def discovery() -> dict[str, Any]:
    """The response of ``GET /cds-services``."""
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "prefetch": dict(s.prefetch),
                "usageRequirements": "Answers from refracture's stored state (prefetch is optional); the patient's "
                "data must reach refracture through its FHIR API. Decision support, not a diagnosis.",
            }
            for s in SERVICES.values()
        ]
    }


def _resources(bundle: Any) -> Iterable[dict[str, Any]]:
    if not isinstance(bundle, dict):
        return
    if bundle.get("resourceType") != "Bundle":
        yield bundle
        return
    for entry in _list(bundle.get("entry")):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            yield resource


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _concept(value: Any) -> dict[str, Any] | None:
    """A CodeableConcept with only well-typed parts: draft orders arrive unvalidated, and the drug recogniser
    expects FHIR's shapes."""
    if not isinstance(value, dict):
        return None
    codings = [
        {k: v for k, v in c.items() if k in ("system", "code", "display") and isinstance(v, str)}
        for c in _list(value.get("coding"))
        if isinstance(c, dict)
    ]
    text = value.get("text")
    return {"coding": codings, **({"text": text} if isinstance(text, str) else {})}


def _quantity(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if k in ("value", "unit", "code") and not isinstance(v, dict | list)}


def _ingredient(item: Any) -> dict[str, Any] | None:
    strength = item.get("strength") if isinstance(item, dict) else None
    if not isinstance(strength, dict):
        return None
    ratio = {k: q for k in ("numerator", "denominator") if (q := _quantity(strength.get(k))) is not None}
    return {"strength": ratio}


def _contained(resource: dict[str, Any], reference: str) -> dict[str, Any] | None:
    wanted = reference.removeprefix("#")
    for item in _list(resource.get("contained")):
        if isinstance(item, dict) and item.get("resourceType") == "Medication" and item.get("id") == wanted:
            return item
    return None


def _dose(resource: dict[str, Any]) -> dict[str, Any] | None:
    for instruction in _list(resource.get("dosageInstruction")):
        for dose_rate in _list(instruction.get("doseAndRate")) if isinstance(instruction, dict) else []:
            if isinstance(dose_rate, dict) and isinstance(dose_rate.get("doseQuantity"), dict):
                return _quantity(dose_rate["doseQuantity"])
    return None


def _drug_of(resource: dict[str, Any], local_target: LocalTarget | None) -> DraftDrug | None:
    found: list[dict[str, Any] | None] = [_concept(resource.get("medicationCodeableConcept"))]
    ingredients: list[dict[str, Any]] = []
    ref = resource.get("medicationReference")
    if isinstance(ref, dict):
        medication = _contained(resource, ref["reference"]) if isinstance(ref.get("reference"), str) else None
        if medication is not None:
            found.append(_concept(medication.get("code")))
            for item in _list(medication.get("ingredient")):
                if isinstance(item, dict):
                    found.append(_concept(item.get("itemCodeableConcept")))
                    ingredients += [i for i in [_ingredient(item)] if i is not None]
        elif isinstance(ref.get("display"), str):
            # A Medication on the EHR's server is not fetched on the hot path: its display names the drug.
            found.append({"text": ref["display"]})
    concepts = [c for c in found if c is not None]
    match = classify(concepts, ingredients, _dose(resource), local_target)
    if match is None:
        return None
    rid = resource.get("id")
    return DraftDrug(match.drug, f"MedicationRequest/{rid}" if isinstance(rid, str) else None)


def draft_drugs(
    draft_orders: Any, selections: Sequence[str] | None = None, local_target: LocalTarget | None = None
) -> list[DraftDrug]:
    """The drugs of the draft orders (``context.draftOrders``, a Bundle) that refracture recognises.

    Args:
        draft_orders: the hook's draft orders.
        selections: order-select's ``context.selections`` ("MedicationRequest/id"): only those trigger the check,
            though any draft may hold the follow-on drug; None: every draft triggers (order-sign).
        local_target: maps a local coding to a standard one (the site's code map).
    """
    chosen = set(selections) if selections is not None else None
    out: list[DraftDrug] = []
    for resource in _resources(draft_orders):
        if resource.get("resourceType") != "MedicationRequest" or resource.get("status") == "entered-in-error":
            continue
        found = _drug_of(resource, local_target)
        if found is None:
            continue
        triggering = chosen is None or (found.reference is not None and found.reference in chosen)
        out.append(DraftDrug(found.drug, found.reference, triggering))
    return out


def prefetched_drugs(prefetch: Any, local_target: LocalTarget | None = None) -> list[DraftDrug]:
    """The drugs of the live MedicationRequests the EHR prefetched (``prefetch.medications``), none triggering."""
    if not isinstance(prefetch, dict):
        return []
    out: list[DraftDrug] = []
    for resource in _resources(prefetch.get("medications")):
        status = resource.get("status")
        if resource.get("resourceType") != "MedicationRequest" or not isinstance(status, str):
            continue
        if status not in _LIVE_STATUSES:
            continue
        found = _drug_of(resource, local_target)
        if found is not None:
            out.append(DraftDrug(found.drug, found.reference, triggering=False))
    return out
