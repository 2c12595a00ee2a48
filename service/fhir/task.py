"""The FHIR R4 Task of an alert, as docs/sources/contract.md says (one per alert), built as a dict from its CarePlan
activity.

A Task carries the follow-up into the EHR's work queues: the same recommended action, status and due date as the
alert's CarePlan activity, addressed to an owner from the site's routing table (docs/integration-guide.md, 'Tasks').
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from service.domain.alert_types import ALERT_TYPES, AlertType
from service.fhir import systems as S

__all__ = [
    "ACTED_ON",
    "TASK_SYSTEM",
    "TaskInput",
    "TaskRoute",
    "build_task",
    "load_routing",
    "parse_routing",
    "route_owner",
    "task_id_of",
    "task_status",
]

TASK_SYSTEM: Final = f"{S.SID_BASE}/task"
_NAMESPACE: Final = uuid.UUID("5f1d2c3b-7a8e-4b6f-9d0c-2e4a6b8c0d1f")
# CarePlan activity status (R4 care-plan-activity-status) → Task status (R4 task-status). An acknowledged or assigned
# alert is being worked on; a snoozed one waits; a resolved one is completed when evidence resolved it and cancelled
# when superseded or no longer indicated; a dismissed one is cancelled.
_FROM_ACTIVITY: Final = {
    "not-started": "requested",
    "in-progress": "in-progress",
    "scheduled": "in-progress",
    "on-hold": "on-hold",
    "completed": "completed",
    "stopped": "cancelled",
    "cancelled": "cancelled",
    "entered-in-error": "entered-in-error",
}
# What refracture does when the EHR moves a Task to one of these statuses (the documented sync-back rule).
ACTED_ON: Final = frozenset({"completed", "cancelled", "in-progress", "accepted"})
_OWNER: Final = re.compile(r"(CareTeam|Practitioner|PractitionerRole|Organization)/[A-Za-z0-9\-.]{1,64}")


def task_id_of(alert_id: str) -> str:
    """The Task's id and identifier value: opaque, stable per alert, derived from nothing but the alert's id."""
    return str(uuid.uuid5(_NAMESPACE, f"task|{alert_id}"))


def task_status(activity_status: str) -> str:
    """The Task status for a CarePlan activity status."""
    return _FROM_ACTIVITY.get(activity_status, "requested")


@dataclass(frozen=True, slots=True)
class TaskRoute:
    """One row of the routing table: alerts of ``alert`` (or ``*``) at ``site`` (or ``*``) go to ``owner``."""

    alert: str
    site: str
    owner: dict[str, str]


def parse_routing(document: Any) -> list[TaskRoute]:
    """The routing table from its JSON document (REFRACTURE_TASK_ROUTING_FILE).

    ``{"routes": [{"alert": "denosumab-overdue", "site": "north", "owner": {"reference": "CareTeam/fls-north",
    "display": "FLS North"}}, ...]}``; ``alert`` and ``site`` default to ``*``.

    Raises:
        ValueError: the document is not such a table, or an owner is not a CareTeam, Practitioner,
            PractitionerRole or Organization reference.
    """
    rows = document.get("routes") if isinstance(document, dict) else None
    if not isinstance(rows, list):
        raise ValueError('the routing table must be {"routes": [...]}')
    routes: list[TaskRoute] = []
    for number, row in enumerate(rows, 1):
        owner = row.get("owner") if isinstance(row, dict) else None
        reference = owner.get("reference") if isinstance(owner, dict) else None
        if not isinstance(reference, str) or not _OWNER.fullmatch(reference):
            raise ValueError(
                f"route {number}: owner.reference must be CareTeam/…, Practitioner/…, PractitionerRole/… "
                "or Organization/…"
            )
        assert isinstance(owner, dict)
        display = owner.get("display")
        routes.append(
            TaskRoute(
                str(row.get("alert", "*")),
                str(row.get("site", "*")),
                {"reference": reference, **({"display": str(display)} if display else {})},
            )
        )
    return routes


def load_routing(path: Path) -> list[TaskRoute]:
    """The routing table from its file (REFRACTURE_TASK_ROUTING_FILE).

    Raises:
        ValueError: the file is not valid JSON or not a routing table (start-up stops with the reason).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"the Task routing file {path} cannot be read: {exc}") from None
    return parse_routing(document)


def route_owner(routes: list[TaskRoute], alert_code: str, site: str | None) -> dict[str, str] | None:
    """The owner for an alert at a site: the most specific route (alert and site, alert, site, neither)."""
    wanted = [(alert_code, site), (alert_code, "*"), ("*", site), ("*", "*")]
    for alert, where in wanted:
        if where is None:
            continue  # the patient has no known site: only rows for any site apply
        for route in routes:
            if route.alert == alert and route.site == where:
                return dict(route.owner)
    return None


@dataclass(frozen=True, slots=True)
class TaskInput:
    """What a Task is made of: the alert, its CarePlan activity and where the Task points."""

    alert_id: str
    alert_code: str
    priority: str  # the alert's: urgent | routine
    patient_id: str
    activity: Mapping[str, Any]  # the alert's CarePlan activity (``detail`` with code, status, scheduledPeriod …)
    plan_ref: str  # "CarePlan/<id>" as the reader knows it
    medication_request: str | None  # "MedicationRequest/<id>" the alert is about, where one exists
    owner: Mapping[str, str] | None
    authored_on: str
    last_modified: str
    ehr_status: str | None = None  # a final status the EHR set (the Task keeps it)


def _title(code: str) -> str:
    try:
        return ALERT_TYPES[AlertType(code)].title
    except ValueError:
        return code


def build_task(task: TaskInput) -> dict[str, Any]:
    """The alert's Task (without meta: the store adds versionId and lastUpdated)."""
    detail = task.activity.get("detail", {})
    words = str((detail.get("code") or {}).get("text") or "Follow up the alert")
    code: dict[str, Any] = dict(detail.get("productCodeableConcept") or detail.get("code") or {"text": words})
    status = task.ehr_status or task_status(str(detail.get("status", "not-started")))
    task_id = task_id_of(task.alert_id)
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id,
        "identifier": [{"system": TASK_SYSTEM, "value": task_id}],
        "basedOn": [{"reference": task.plan_ref}],
        "status": status,
        "intent": "order",
        "priority": "urgent" if task.priority == "urgent" else "routine",
        "code": code,
        "description": str(detail.get("description") or words),
        "focus": {"reference": task.plan_ref},
        "for": {"reference": f"Patient/{task.patient_id}"},
        "authoredOn": task.authored_on,
        "lastModified": task.last_modified,
        "requester": {"display": "refracture"},
        "reasonCode": {
            "coding": [{"system": S.ALERT_TYPE, "code": task.alert_code, "display": _title(task.alert_code)}],
        },
    }
    if task.medication_request:
        # R4 Task.focus is 0..1 (the CarePlan): the MedicationRequest the alert is about is a second basedOn.
        resource["basedOn"].append({"reference": task.medication_request})
    reason = (detail.get("statusReason") or {}).get("text")
    if reason and status in ("cancelled", "completed") and task.ehr_status is None:
        resource["statusReason"] = {"text": str(reason)}
    if task.owner:
        resource["owner"] = dict(task.owner)
    end = (detail.get("scheduledPeriod") or {}).get("end")
    if end:
        resource["restriction"] = {"period": {"end": str(end)}}
    return resource
