"""The write-back outbox in PostgreSQL: queue, claim under a lease, record deliveries, dead-letter, replay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from service.adapters.postgres import tasks
from service.adapters.postgres.audit import append_audit
from service.adapters.postgres.queries import query
from service.domain.audit_record import AuditRecord
from service.fhir.assessment_record import render_risk_assessment
from service.fhir.jsonio import dumps
from service.usecases.ports.writeback import ClaimedWriteback, DeliveryRecord, WritebackState

__all__ = [
    "claim",
    "complete",
    "counts",
    "dead",
    "dead_jobs",
    "queue_writeback",
    "read_ehr_state",
    "release",
    "replay",
    "retry",
    "save_ehr_state",
    "set_plan_ehr_version",
    "state",
]

Conn = psycopg.Connection[dict[str, Any]]


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=lambda v: dumps(v).decode())


def queue_writeback(conn: Conn, patient_ids: Sequence[str], now: datetime) -> None:
    """Bump the patients' jobs (sorted, so concurrent transactions lock rows in one order)."""
    ids = sorted(set(patient_ids))
    if ids:
        conn.execute(query("queue_writeback"), {"patient_ids": ids, "now": now})


def claim(
    conn: Conn, now: datetime, lease_until: datetime, limit: int, patient_ids: Sequence[str] | None
) -> list[ClaimedWriteback]:
    rows = conn.execute(
        query("claim_writebacks"),
        {
            "now": now,
            "lease_until": lease_until,
            "limit": limit,
            "patient_ids": sorted(patient_ids) if patient_ids is not None else None,
        },
    ).fetchall()
    return [ClaimedWriteback(r["patient_id"], r["wanted_seq"], r["attempts"], r["first_failure_at"]) for r in rows]


def _risk_assessment(row: dict[str, Any]) -> dict[str, Any] | None:
    """The newest RiskAssessment: as stored (before migration 0022), or rendered from the compact result."""
    if row.get("assessment_result") is None:
        stored: dict[str, Any] | None = row.get("risk_assessment")
        return stored
    return render_risk_assessment(
        str(row["assessment_id"]),
        row["assessment_patient_id"],
        row["model_version"],
        row["inputs_hash"],
        row["assessment_result"],
    )


def state(conn: Conn, patient_id: str) -> WritebackState:
    row = conn.execute(query("writeback_state"), {"patient_id": patient_id}).fetchone() or {}
    return WritebackState(
        assessment_id=str(row["assessment_id"]) if row.get("assessment_id") else None,
        risk_assessment=_risk_assessment(row),
        assessment_delivered=row.get("assessment_delivered_at") is not None,
        last_delivered_ehr_id=row.get("last_delivered_ehr_id"),
        plan_id=str(row["plan_id"]) if row.get("plan_id") else None,
        plan_version=row.get("plan_version"),
        care_plan=row.get("care_plan"),
        plan_ehr_id=row.get("plan_ehr_id"),
        plan_ehr_version=row.get("plan_ehr_version"),
        plan_delivered_version=row.get("plan_delivered_version"),
        tasks=tasks.undelivered_tasks(conn, patient_id),
    )


def _audit(conn: Conn, patient_id: str, outcome: int, detail: str, now: datetime) -> None:
    # Every write-back attempt's result joins the audit trail in the same transaction as the outbox's own change.
    append_audit(
        conn,
        [
            AuditRecord(
                at=now,
                actor="refracture",
                auth_source="system",
                action="write-back",
                what="write-back to the EHR",
                outcome=outcome,
                patient_id=patient_id,
                detail=detail[:500],
            )
        ],
    )


def complete(conn: Conn, job: ClaimedWriteback, record: DeliveryRecord, now: datetime) -> None:
    if record.assessment_id and record.ehr_assessment_id:
        conn.execute(
            query("record_assessment_delivery"),
            {"id": record.assessment_id, "ehr_id": record.ehr_assessment_id, "now": now},
        )
    if record.plan_version is not None:
        conn.execute(
            query("record_plan_delivery"),
            {
                "patient_id": job.patient_id,
                "ehr_id": record.ehr_plan_id,
                "ehr_version": record.ehr_plan_version,
                "version": record.plan_version,
            },
        )
    for alert_id, version, ehr_id, ehr_version in record.tasks:
        tasks.record_task_delivery(conn, alert_id, version, ehr_id, ehr_version)
    if record.assessment_id or record.plan_version is not None:
        conn.execute(
            query("log_delivery"),
            {
                "patient_id": job.patient_id,
                "now": now,
                "mode": record.mode,
                "assessment_id": record.assessment_id,
                "ehr_assessment_id": record.ehr_assessment_id,
                "care_plan_version": record.plan_version,
                "ehr_care_plan_id": record.ehr_plan_id,
                "ehr_care_plan_version": record.ehr_plan_version,
            },
        )
    conn.execute(query("writeback_done"), {"patient_id": job.patient_id, "seq": job.seq, "now": now})
    sent = [
        f"RiskAssessment {record.ehr_assessment_id}" if record.ehr_assessment_id else None,
        f"CarePlan version {record.plan_version}" if record.plan_version is not None else None,
        f"{len(record.tasks)} Task(s)" if record.tasks else None,
    ]
    _audit(conn, job.patient_id, 200, f"{record.mode}: {', '.join(s for s in sent if s) or 'nothing new'}", now)


def retry(
    conn: Conn,
    patient_id: str,
    next_attempt_at: datetime,
    error: str,
    status: int | None,
    answer: Any,
    now: datetime,
) -> None:
    conn.execute(
        query("writeback_retry"),
        {
            "patient_id": patient_id,
            "next_attempt_at": next_attempt_at,
            "error": error,
            "status": status,
            "answer": _json(answer),
            "now": now,
        },
    )
    # The EHR's own words stay in the outbox row: they may quote the patient, the audit trail must not.
    _audit(conn, patient_id, status or 0, f"failed; retry at {next_attempt_at.isoformat()}", now)


def dead(conn: Conn, patient_id: str, error: str, status: int | None, answer: Any, now: datetime) -> None:
    conn.execute(
        query("writeback_dead"),
        {
            "patient_id": patient_id,
            "error": error,
            "status": status,
            "answer": _json(answer),
            "now": now,
        },
    )
    _audit(conn, patient_id, status or 0, "refused or given up: dead letter, kept for replay", now)


def release(conn: Conn, patient_id: str, next_attempt_at: datetime, now: datetime) -> None:
    conn.execute(query("writeback_release"), {"patient_id": patient_id, "next_attempt_at": next_attempt_at, "now": now})


def set_plan_ehr_version(conn: Conn, patient_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
    conn.execute(
        query("set_plan_ehr_version"), {"patient_id": patient_id, "ehr_id": ehr_id, "ehr_version": ehr_version}
    )


def save_ehr_state(conn: Conn, base_url: str | None, mode: str, detail: str, now: datetime) -> None:
    conn.execute(query("save_ehr_state"), {"base_url": base_url, "mode": mode, "detail": detail, "now": now})


def read_ehr_state(conn: Conn) -> dict[str, Any] | None:
    row = conn.execute(query("read_ehr_state")).fetchone()
    return dict(row) if row else None


def counts(conn: Conn) -> dict[str, Any]:
    rows = conn.execute(query("writeback_counts")).fetchall()
    oldest = [r["oldest_pending_at"] for r in rows if r["oldest_pending_at"] is not None]
    return {"jobs": {r["status"]: r["jobs"] for r in rows}, "oldest_pending_at": min(oldest) if oldest else None}


def dead_jobs(conn: Conn, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(query("dead_writebacks"), {"limit": limit})]


def replay(conn: Conn, patient_ids: Sequence[str] | None, now: datetime) -> list[str]:
    rows = conn.execute(
        query("replay_writebacks"),
        {"patient_ids": list(patient_ids) if patient_ids is not None else None, "now": now},
    )
    return sorted(r["patient_id"] for r in rows)
