"""What refracture sends the EHR: the write mode its CapabilityStatement allows, and the requests of each mode.

Exactly-once is an effect (docs/sources/contract.md, 'Delivery'): deterministic identifiers, conditional updates on them
(or client-assigned ids), If-Match on the CarePlan's version, and one delivery per patient at a time.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

from service.fhir import systems as S
from service.fhir.task import TASK_SYSTEM

__all__ = [
    "WriteMode",
    "WritePlan",
    "build_provenance",
    "choose_mode",
    "conditional_url",
    "merge_care_plan",
    "parse_location",
    "prepare_care_plan",
    "prepare_risk_assessment",
    "prepare_task",
    "task_writes_allowed",
    "transaction_bundle",
]

RA_SYSTEM: Final = f"{S.SID_BASE}/risk-assessment"
PLAN_SYSTEM: Final = f"{S.SID_BASE}/care-plan"
SOURCE: Final = S.CANONICAL_BASE  # meta.source of everything refracture writes
# Bounded quantifiers: the Location header is the EHR's text (linear time on any header).
_LOCATION: Final = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?"
)


class WriteMode(StrEnum):
    """How results reach the EHR, best first."""

    TRANSACTION = "transaction"  # one transaction Bundle per patient, conditional updates on identifiers
    CONDITIONAL = "conditional"  # the same conditional updates as separate requests
    CLIENT_ID = "client-id"  # PUT with refracture's ids, where the EHR lets a client choose them (updateCreate)
    PULL = "pull"  # nothing is sent; the EHR reads refracture's own FHIR endpoints


def choose_mode(capability: Any) -> tuple[WriteMode, str]:
    """The best write mode the EHR's CapabilityStatement allows, and why.

    Args:
        capability: the EHR's CapabilityStatement (parsed JSON).

    Returns:
        The mode and a plain reason, e.g. for /readyz.
    """
    rests = [r for r in (capability or {}).get("rest", []) if isinstance(r, dict) and r.get("mode") == "server"]
    if not rests:
        return WriteMode.PULL, "the EHR's CapabilityStatement lists no server REST capabilities"
    rest = rests[0]
    resources = {r.get("type"): r for r in rest.get("resource", []) if isinstance(r, dict)}

    def interactions(kind: str) -> set[str]:
        return {str(i.get("code")) for i in resources.get(kind, {}).get("interaction", []) if isinstance(i, dict)}

    needed = ("RiskAssessment", "CarePlan")
    missing = [kind for kind in needed if "update" not in interactions(kind)]
    if missing:
        return WriteMode.PULL, f"the EHR accepts no {' or '.join(missing)} updates"
    conditional = all(resources[kind].get("conditionalUpdate") is True for kind in needed)
    transaction = "transaction" in {i.get("code") for i in rest.get("interaction", []) if isinstance(i, dict)}
    if conditional and transaction:
        return WriteMode.TRANSACTION, "transactions with conditional updates"
    if conditional:
        return WriteMode.CONDITIONAL, "conditional updates (no transactions)"
    if all(resources[kind].get("updateCreate") is True for kind in needed):
        return WriteMode.CLIENT_ID, "updates with client-assigned ids (no conditional updates)"
    return WriteMode.PULL, "the EHR allows neither conditional updates nor client-assigned ids"


def provenance_allowed(capability: Any) -> bool:
    """Whether Provenance can be written with a client-assigned id (Provenance has no identifier to key on)."""
    for rest in (capability or {}).get("rest", []):
        for resource in rest.get("resource", []) if isinstance(rest, dict) else []:
            if isinstance(resource, dict) and resource.get("type") == "Provenance":
                codes = {i.get("code") for i in resource.get("interaction", []) if isinstance(i, dict)}
                return "update" in codes and resource.get("updateCreate") is True
    return False


def task_writes_allowed(capability: Any, mode: WriteMode) -> bool:
    """Whether the EHR takes Tasks in this write mode (an EHR without them still gets the RiskAssessment and CarePlan;
    its Tasks are then served in pull mode only)."""
    if mode is WriteMode.PULL:
        return False
    for rest in (capability or {}).get("rest", []):
        if not isinstance(rest, dict) or rest.get("mode") != "server":
            continue
        for resource in rest.get("resource", []):
            if isinstance(resource, dict) and resource.get("type") == "Task":
                codes = {i.get("code") for i in resource.get("interaction", []) if isinstance(i, dict)}
                if "update" not in codes:
                    return False
                if mode is WriteMode.CLIENT_ID:
                    return resource.get("updateCreate") is True
                return resource.get("conditionalUpdate") is True
    return False


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """``Type?identifier=system|value`` with the token percent-encoded."""
    return f"{resource_type}?identifier={quote(f'{system}|{value}', safe='')}"


def prepare_risk_assessment(resource: dict[str, Any], mode: WriteMode) -> dict[str, Any]:
    """The RiskAssessment as sent: refracture's id only where the EHR keeps client ids; meta.source names us."""
    sent = {k: v for k, v in resource.items() if k != "meta"}
    if mode is not WriteMode.CLIENT_ID:
        sent.pop("id", None)  # a conditional update finds the resource by identifier; the EHR keeps its own id
    sent["meta"] = {"source": SOURCE}
    return sent


def prepare_care_plan(plan: dict[str, Any], mode: WriteMode, risk_assessment_ref: str | None) -> dict[str, Any]:
    """The CarePlan as sent: supportingInfo points at the RiskAssessment as the EHR knows it."""
    sent = {k: v for k, v in plan.items() if k not in ("meta", "supportingInfo")}
    if mode is not WriteMode.CLIENT_ID:
        sent.pop("id", None)
    if risk_assessment_ref:
        sent["supportingInfo"] = [{"reference": risk_assessment_ref}]
    sent["author"] = {"display": "refracture"}
    sent["meta"] = {"source": SOURCE}
    return sent


def build_provenance(
    provenance_id: str, targets: list[str], inputs: list[str], recorded: str, software: str
) -> dict[str, Any]:
    """A Provenance naming refracture as the author of the targets and the EHR resources it used."""
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": provenance_id,
        "meta": {"source": SOURCE},
        "target": [{"reference": t} for t in targets],
        "recorded": recorded,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE",
                    "display": "revise",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                            "display": "Author",
                        }
                    ]
                },
                "who": {"display": software},
            }
        ],
    }
    if inputs:
        provenance["entity"] = [{"role": "source", "what": {"reference": ref}} for ref in inputs]
    return provenance


def prepare_task(task: dict[str, Any], mode: WriteMode, plan_id: str | None, plan_ref: str | None) -> dict[str, Any]:
    """The Task as sent: its CarePlan references point at the CarePlan as the EHR knows it (or the transaction's
    placeholder); refracture's id only where the EHR keeps client ids."""
    sent = copy.deepcopy({k: v for k, v in task.items() if k != "meta"})
    if mode is not WriteMode.CLIENT_ID:
        sent.pop("id", None)
    ours = f"CarePlan/{plan_id}" if plan_id else None
    if ours and plan_ref and plan_ref != ours:
        if (sent.get("focus") or {}).get("reference") == ours:
            sent["focus"] = {"reference": plan_ref}
        sent["basedOn"] = [
            {"reference": plan_ref} if b.get("reference") == ours else b for b in sent.get("basedOn", [])
        ]
    sent["meta"] = {"source": SOURCE}
    return sent


@dataclass(slots=True)
class TaskWrite:
    """One alert's Task to send: our version, and the EHR's version for If-Match."""

    alert_id: str
    task_id: str
    version: int
    resource: dict[str, Any]
    ehr_version: str | None = None


@dataclass(slots=True)
class WritePlan:
    """The resources to send for one patient, and what is already at the EHR."""

    patient_id: str
    risk_assessment: dict[str, Any] | None = None  # to send (not yet delivered)
    assessment_id: str | None = None
    delivered_assessment_ref: str | None = None  # "RiskAssessment/<ehr id>" of the newest delivered one
    care_plan: dict[str, Any] | None = None  # to send (a version not yet delivered)
    plan_id: str | None = None
    plan_version: int | None = None
    plan_ehr_version: str | None = None  # for If-Match
    inputs: list[str] = field(default_factory=list)
    plan_ehr_id: str | None = None  # the CarePlan's id at the EHR, once delivered
    tasks: list[TaskWrite] = field(default_factory=list)


def transaction_bundle(plan: WritePlan, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """One transaction Bundle: conditional updates of the RiskAssessment and CarePlan, and the Provenance."""
    entries: list[dict[str, Any]] = []
    ra_ref = plan.delivered_assessment_ref
    if plan.risk_assessment is not None and plan.assessment_id:
        ra_url = f"urn:uuid:{plan.assessment_id}"
        entries.append(
            {
                "fullUrl": ra_url,
                "resource": prepare_risk_assessment(plan.risk_assessment, WriteMode.TRANSACTION),
                "request": {"method": "PUT", "url": conditional_url("RiskAssessment", RA_SYSTEM, plan.assessment_id)},
            }
        )
        ra_ref = ra_url
    if plan.care_plan is not None and plan.plan_id:
        request: dict[str, Any] = {"method": "PUT", "url": conditional_url("CarePlan", PLAN_SYSTEM, plan.plan_id)}
        if plan.plan_ehr_version:
            request["ifMatch"] = f'W/"{plan.plan_ehr_version}"'
        entries.append(
            {
                "fullUrl": f"urn:uuid:{plan.plan_id}",
                "resource": prepare_care_plan(plan.care_plan, WriteMode.TRANSACTION, ra_ref),
                "request": request,
            }
        )
    plan_ref = (
        f"urn:uuid:{plan.plan_id}"
        if plan.care_plan is not None and plan.plan_id
        else (f"CarePlan/{plan.plan_ehr_id}" if plan.plan_ehr_id else None)
    )
    for task in plan.tasks:
        task_request: dict[str, Any] = {"method": "PUT", "url": conditional_url("Task", TASK_SYSTEM, task.task_id)}
        if task.ehr_version:
            task_request["ifMatch"] = f'W/"{task.ehr_version}"'
        entries.append(
            {
                "fullUrl": f"urn:uuid:{task.task_id}",
                "resource": prepare_task(task.resource, WriteMode.TRANSACTION, plan.plan_id, plan_ref),
                "request": task_request,
            }
        )
    if provenance is not None and entries:
        entries.append({"resource": provenance, "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def parse_location(location: str | None) -> tuple[str | None, str | None]:
    """(id, version) from a Location or transaction-response location such as ``CarePlan/12/_history/3``."""
    if not location:
        return None, None
    match = _LOCATION.search(location.split("?")[0])
    return (match.group(2), match.group(3)) if match else (None, None)


def etag_version(etag: str | None) -> str | None:
    """The version in an ETag such as ``W/"3"``."""
    if not etag:
        return None
    return etag.strip().removeprefix("W/").strip('"') or None


def merge_care_plan(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Re-apply our plan onto the EHR's current one after a version conflict, without overwriting their additions.

    refracture owns its activities (by element id), status, supportingInfo and the fields it sets; activities and
    notes someone added at the EHR are kept.
    """
    merged = copy.deepcopy(ours)
    our_ids = {a.get("id") for a in ours.get("activity", [])}
    foreign = [a for a in theirs.get("activity", []) if a.get("id") not in our_ids]
    if foreign:
        merged["activity"] = [*ours.get("activity", []), *foreign]
    if theirs.get("note"):
        merged["note"] = theirs["note"]
    return merged
