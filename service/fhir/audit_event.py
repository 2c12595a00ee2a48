"""Audit rows as FHIR R4 AuditEvent resources, shaped after IHE Basic Audit Log Patterns (BALP).

BALP profiles one AuditEvent per RESTful interaction with a patient: type ``rest`` with the interaction as subtype,
the agent who asked (with the network address), refracture as the observer, the patient and the resource as
entities, and the request id (``X-Request-Id``) as an entity of its own.
"""

from __future__ import annotations

import json
from typing import Any, Final

from service.domain.audit_record import StoredAudit
from service.fhir.systems import CANONICAL_BASE

__all__ = ["AUDIT_CHAIN_EXTENSION", "audit_event", "audit_ndjson_line"]

# The row's place in the hash chain (docs/security.md, "Audit trail"): a SIEM that keeps these can tell later
# whether the trail it was sent is still the trail in the database.
AUDIT_CHAIN_EXTENSION: Final = f"{CANONICAL_BASE}/StructureDefinition/audit-chain"

_EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_DICOM: Final = "http://dicom.nema.org/resources/ontology/DCM"
_INTERACTION: Final = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_BALP_ENTITY: Final = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
_ROLE_SYSTEM: Final = f"{CANONICAL_BASE}/CodeSystem/role"

# Our action → (RESTful interaction, AuditEvent.action C/R/U/D/E).
_REST: Final = {
    "read": ("read", "R"),
    "search": ("search-type", "E"),
    "create": ("create", "C"),
    "update": ("update", "U"),
    "transaction": ("transaction", "E"),
    "batch": ("batch", "E"),
    "export": ("search-type", "E"),
}


def _outcome(status: int) -> str:
    # 0 success, 4 minor failure (the request was refused), 8 serious failure (we failed).
    if 200 <= status < 400:
        return "0"
    return "4" if 400 <= status < 500 else "8"


def audit_event(row: StoredAudit) -> dict[str, Any]:
    """The AuditEvent of one audit row."""
    record = row.record
    interaction, action = _REST.get(record.action, (None, "E"))
    if interaction:
        event_type = {"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
        subtype = [{"system": _INTERACTION, "code": interaction}]
    else:
        # Write-backs, alert actions, sign-ins: application activity, named by our own action code.
        event_type = {"system": _DICOM, "code": "110100", "display": "Application Activity"}
        subtype = [{"system": f"{CANONICAL_BASE}/CodeSystem/audit-action", "code": record.action}]
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"system": f"{CANONICAL_BASE}/sid/subject", "value": record.actor}},
        "requestor": True,
    }
    if record.roles:
        agent["role"] = [{"coding": [{"system": _ROLE_SYSTEM, "code": role}]} for role in record.roles]
    if record.client_id:
        agent["altId"] = record.client_id
    if record.source_ip:
        agent["network"] = {"address": record.source_ip, "type": "2"}  # 2: IP address
    entities: list[dict[str, Any]] = []
    if record.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{record.patient_id}"},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    if record.resource_type and record.resource_id:
        entities.append(
            {
                "what": {"reference": f"{record.resource_type}/{record.resource_id}"},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    if record.request_id:
        entities.append(
            {
                "what": {"identifier": {"value": record.request_id}},
                "type": {"system": _BALP_ENTITY, "code": "XrequestId"},
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.id),
        "type": event_type,
        "subtype": subtype,
        "action": action,
        "recorded": record.at.isoformat(),
        "outcome": _outcome(record.outcome),
        "outcomeDesc": f"{record.outcome} {record.what}" + (f": {record.detail}" if record.detail else ""),
        "agent": [agent],
        "source": {
            "observer": {"display": "refracture"},
            "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
    }
    if entities:
        event["entity"] = entities
    if row.seq is not None and row.hash is not None:
        event["extension"] = [
            {
                "url": AUDIT_CHAIN_EXTENSION,
                "extension": [
                    {"url": "seq", "valueString": str(row.seq)},
                    {"url": "hash", "valueString": row.hash.hex()},
                ],
            }
        ]
    return event


def audit_ndjson_line(row: StoredAudit) -> bytes:
    """One line of the NDJSON export (FHIR Bulk Data's format: one resource per line, UTF-8, ``\\n``)."""
    return json.dumps(audit_event(row), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
