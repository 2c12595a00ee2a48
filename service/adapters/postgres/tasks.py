"""The alerts' Tasks in PostgreSQL (issue 18): versions, what the EHR has, and what it changed that we acted on."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from service.adapters.postgres.queries import query
from service.fhir.jsonio import dumps
from service.usecases.ports.alerts import StoredTask
from service.usecases.ports.resources import StoredText

__all__ = [
    "mark_task_synced",
    "patient_organizations",
    "read_task",
    "record_task_delivery",
    "save_tasks",
    "search_tasks",
    "set_task_ehr_version",
    "task_for_update",
    "tasks_of",
    "undelivered_tasks",
]

Conn = psycopg.Connection[dict[str, Any]]
_FILE = "tasks.sql"


def _task(row: dict[str, Any]) -> StoredTask:
    return StoredTask(
        alert_id=str(row["alert_id"]),
        patient_id=row["patient_id"],
        id=str(row["id"]),
        version=row["version"],
        content_hash=row["content_hash"],
        resource=dict(row["resource"]),
        ehr_id=row["ehr_id"],
        ehr_version=row["ehr_version"],
        delivered_version=row["delivered_version"],
        synced_ehr_version=row["synced_ehr_version"],
        ehr_final_status=row["ehr_final_status"],
    )


def tasks_of(conn: Conn, patient_ids: Sequence[str]) -> dict[str, StoredTask]:
    rows = conn.execute(query("tasks_of_patients", _FILE), {"patient_ids": list(patient_ids)})
    return {str(r["alert_id"]): _task(r) for r in rows}


def save_tasks(conn: Conn, stored: Sequence[StoredTask], now: datetime) -> None:
    if not stored:
        return
    with conn.cursor() as cur:
        cur.executemany(
            query("save_task", _FILE),
            [
                {
                    "alert_id": task.alert_id,
                    "patient_id": task.patient_id,
                    "id": task.id,
                    "version": task.version,
                    "content_hash": task.content_hash,
                    "status": task.resource.get("status", "requested"),
                    "now": now,
                    "resource": Jsonb(task.resource, dumps=lambda v: dumps(v).decode()),
                    "delivered_version": task.delivered_version,
                }
                for task in stored
            ],
        )


def patient_organizations(conn: Conn, patient_ids: Sequence[str]) -> dict[str, str]:
    rows = conn.execute(query("patient_organizations", _FILE), {"patient_ids": list(patient_ids)})
    return {r["id"]: r["organization"] for r in rows}


def task_for_update(conn: Conn, identifier: str) -> StoredTask | None:
    try:
        uuid.UUID(identifier)
    except ValueError:
        return None
    row = conn.execute(query("task_for_update", _FILE), {"id": identifier}).fetchone()
    return _task(row) if row else None


def mark_task_synced(
    conn: Conn, alert_id: str, ehr_id: str | None, ehr_version: str | None, final_status: str | None
) -> None:
    conn.execute(
        query("mark_task_synced", _FILE),
        {"alert_id": alert_id, "ehr_id": ehr_id, "ehr_version": ehr_version, "final_status": final_status},
    )


def undelivered_tasks(conn: Conn, patient_id: str) -> tuple[StoredTask, ...]:
    return tuple(_task(r) for r in conn.execute(query("undelivered_tasks", _FILE), {"patient_id": patient_id}))


def record_task_delivery(conn: Conn, alert_id: str, version: int, ehr_id: str | None, ehr_version: str | None) -> None:
    conn.execute(
        query("record_task_delivery", _FILE),
        {"alert_id": alert_id, "version": version, "ehr_id": ehr_id, "ehr_version": ehr_version},
    )


def set_task_ehr_version(conn: Conn, alert_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
    conn.execute(
        query("set_task_ehr_version", _FILE), {"alert_id": alert_id, "ehr_id": ehr_id, "ehr_version": ehr_version}
    )


def read_task(conn: Conn, task_id: str) -> StoredText | None:
    try:
        uuid.UUID(task_id)
    except ValueError:
        return None
    row = conn.execute(query("read_task", _FILE), {"id": task_id}).fetchone()
    return StoredText(row["body"], row["version"], row["updated_at"]) if row else None


def search_tasks(
    conn: Conn, patient_id: str | None, statuses: Sequence[str] | None, task_id: str | None, limit: int
) -> list[str]:
    if task_id is not None:
        try:
            uuid.UUID(task_id)
        except ValueError:
            return []
    rows = conn.execute(
        query("search_tasks", _FILE),
        {
            "patient_id": patient_id,
            "status": list(statuses) if statuses else None,
            "id": task_id,
            "limit": limit,
        },
    )
    return [str(r["body"]) for r in rows]
