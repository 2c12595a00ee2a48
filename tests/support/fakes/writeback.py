"""The write-back outbox over the in-memory tables: each function is its query in queries.sql / tasks.sql.

One row per patient; ``wanted_seq`` is bumped by every new state, ``sent_seq`` is the last one delivered; a job is
due when pending and its backoff has passed, or when its delivery lease ran out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from service.domain.audit_record import AuditRecord
from service.fhir.assessment_record import render_risk_assessment
from service.usecases.ports.writeback import ClaimedWriteback, DeliveryRecord, WritebackState
from tests.support.fakes.tables import Tables, WritebackJob, jsonb

__all__ = [
    "claim",
    "complete",
    "dead",
    "queue_writeback",
    "release",
    "replay",
    "retry",
    "state",
]


def queue_writeback(t: Tables, patient_ids: Sequence[str], now: datetime) -> None:
    """A new state to send: a job waiting out a backoff keeps its wait; a dead or delivered one starts now."""
    for patient_id in sorted(set(patient_ids)):
        t.writeback_seq += 1
        job = t.writebacks.get(patient_id)
        if job is None:
            t.writebacks[patient_id] = WritebackJob(patient_id, t.writeback_seq, next_attempt_at=now, updated_at=now)
            continue
        if job.status == "dead":
            job.attempts, job.first_failure_at = 0, None
        if job.status in ("dead", "delivered"):
            job.next_attempt_at = now
        job.wanted_seq = t.writeback_seq
        job.status = "delivering" if job.status == "delivering" else "pending"
        job.updated_at = now


def claim(
    t: Tables, now: datetime, lease_until: datetime, limit: int, patient_ids: Sequence[str] | None
) -> list[ClaimedWriteback]:
    """Due jobs, and jobs whose lease ran out, oldest due first."""
    due = [
        job
        for job in t.writebacks.values()
        if (
            (job.status == "pending" and job.next_attempt_at <= now)
            or (job.status == "delivering" and job.lease_until is not None and job.lease_until < now)
        )
        and (patient_ids is None or job.patient_id in patient_ids)
    ]
    due.sort(key=lambda job: job.next_attempt_at)
    claimed = []
    for job in due[:limit]:
        job.status, job.lease_until, job.updated_at = "delivering", lease_until, now
        claimed.append(ClaimedWriteback(job.patient_id, job.wanted_seq, job.attempts, job.first_failure_at))
    return claimed


def state(t: Tables, patient_id: str) -> WritebackState:
    """The newest assessment (rendered from its compact result), the care plan, and the Tasks not yet delivered."""
    mine = sorted((a for a in t.assessments if a.row.patient_id == patient_id), key=lambda a: a.row.sequence_no)
    latest = mine[-1] if mine else None
    delivered = [a for a in mine if a.delivered_at is not None]
    plan = t.care_plans.get(patient_id)
    tasks = sorted(
        (task for task in t.tasks.values() if task.patient_id == patient_id and task.delivered_version != task.version),
        key=lambda task: task.alert_id,
    )
    return WritebackState(
        assessment_id=latest.row.id if latest else None,
        risk_assessment=(
            render_risk_assessment(
                latest.row.id, patient_id, latest.row.model_version, latest.row.inputs_hash, latest.row.result
            )
            if latest
            else None
        ),
        assessment_delivered=latest is not None and latest.delivered_at is not None,
        last_delivered_ehr_id=delivered[-1].ehr_id if delivered else None,
        plan_id=plan.id if plan else None,
        plan_version=plan.version if plan else None,
        care_plan=jsonb(plan.resource) if plan else None,
        plan_ehr_id=plan.ehr_id if plan else None,
        plan_ehr_version=plan.ehr_version if plan else None,
        plan_delivered_version=plan.delivered_version if plan else None,
        tasks=tuple(replace(task, resource=jsonb(task.resource)) for task in tasks),
    )


def complete(t: Tables, job: ClaimedWriteback, record: DeliveryRecord, now: datetime) -> None:
    """Record what the EHR accepted; the job is done unless a newer state was queued meanwhile."""
    if record.assessment_id and record.ehr_assessment_id:
        for assessment in t.assessments:
            if assessment.row.id == record.assessment_id:
                assessment.ehr_id, assessment.delivered_at = record.ehr_assessment_id, now
    plan = t.care_plans.get(job.patient_id)
    if record.plan_version is not None and plan is not None and plan.version >= record.plan_version:
        plan.ehr_id, plan.ehr_version = record.ehr_plan_id, record.ehr_plan_version
        plan.delivered_version = record.plan_version
    for alert_id, version, ehr_id, ehr_version in record.tasks:
        task = t.tasks.get(alert_id)
        if task is not None and task.version >= version:
            t.tasks[alert_id] = replace(
                task,
                ehr_id=ehr_id if ehr_id is not None else task.ehr_id,
                ehr_version=ehr_version,
                # greatest(): never lower, and NULL counts as nothing
                delivered_version=version if task.delivered_version is None else max(task.delivered_version, version),
                synced_ehr_version=ehr_version if ehr_version is not None else task.synced_ehr_version,
            )
    if record.assessment_id or record.plan_version is not None:
        t.deliveries.append({"patient_id": job.patient_id, "delivered_at": now, "record": record})
    row = t.writebacks[job.patient_id]
    row.sent_seq, row.attempts, row.first_failure_at, row.lease_until = job.seq, 0, None, None
    row.last_error, row.last_status, row.last_answer = None, None, None
    row.status = "pending" if row.wanted_seq > job.seq else "delivered"
    row.next_attempt_at = row.updated_at = now
    sent = [
        f"RiskAssessment {record.ehr_assessment_id}" if record.ehr_assessment_id else None,
        f"CarePlan version {record.plan_version}" if record.plan_version is not None else None,
        f"{len(record.tasks)} Task(s)" if record.tasks else None,
    ]
    _audit(t, job.patient_id, 200, f"{record.mode}: {', '.join(s for s in sent if s) or 'nothing new'}", now)


def retry(
    t: Tables, patient_id: str, next_attempt_at: datetime, error: str, status: int | None, answer: Any, now: datetime
) -> None:
    """Another try later, the failure kept."""
    job = t.writebacks.get(patient_id)
    if job is None:
        return
    job.status = "pending" if job.status == "delivering" else job.status
    job.attempts += 1
    job.next_attempt_at, job.lease_until = next_attempt_at, None
    job.first_failure_at = job.first_failure_at or now
    job.last_error, job.last_status, job.last_answer = error, status, jsonb(answer)
    job.updated_at = now
    _audit(t, patient_id, status or 0, f"failed; retry at {next_attempt_at.isoformat()}", now)


def dead(t: Tables, patient_id: str, error: str, status: int | None, answer: Any, now: datetime) -> None:
    """The dead letter, with the EHR's answer."""
    job = t.writebacks.get(patient_id)
    if job is None:
        return
    job.status, job.lease_until = "dead", None
    job.attempts += 1
    job.last_error, job.last_status, job.last_answer = error, status, jsonb(answer)
    job.first_failure_at = job.first_failure_at or now
    job.updated_at = now
    _audit(t, patient_id, status or 0, "refused or given up: dead letter, kept for replay", now)


def release(t: Tables, patient_id: str, next_attempt_at: datetime, now: datetime) -> None:
    """A claimed job handed back unattempted (no attempt counted)."""
    job = t.writebacks.get(patient_id)
    if job is not None and job.status == "delivering":
        job.status, job.lease_until, job.next_attempt_at, job.updated_at = "pending", None, next_attempt_at, now


def replay(t: Tables, patient_ids: Sequence[str] | None, now: datetime) -> list[str]:
    """Dead jobs back in the queue."""
    replayed = []
    for job in t.writebacks.values():
        if job.status == "dead" and (patient_ids is None or job.patient_id in patient_ids):
            job.status, job.attempts, job.first_failure_at = "pending", 0, None
            job.next_attempt_at, job.lease_until, job.updated_at = now, None, now
            replayed.append(job.patient_id)
    return sorted(replayed)


def counts(t: Tables) -> dict[str, Any]:
    """Jobs per status and the oldest pending one."""
    jobs: dict[str, int] = {}
    for job in t.writebacks.values():
        jobs[job.status] = jobs.get(job.status, 0) + 1
    pending = [job.updated_at for job in t.writebacks.values() if job.status == "pending"]
    return {"jobs": jobs, "oldest_pending_at": min(pending) if pending else None}


def dead_jobs(t: Tables, limit: int) -> list[dict[str, Any]]:
    """The dead letter, newest first."""
    rows = sorted((j for j in t.writebacks.values() if j.status == "dead"), key=lambda j: j.updated_at, reverse=True)
    return [
        {
            "patient_id": j.patient_id,
            "attempts": j.attempts,
            "last_status": j.last_status,
            "last_error": j.last_error,
            "last_answer": j.last_answer,
            "updated_at": j.updated_at,
        }
        for j in rows[:limit]
    ]


def _audit(t: Tables, patient_id: str, outcome: int, detail: str, now: datetime) -> None:
    t.audit.append(
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
    )
