"""Alerts, their history, the sweep index and CarePlans in PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from service.adapters.postgres import tasks
from service.adapters.postgres.assessments import PostgresAssessmentSession
from service.adapters.postgres.queries import query
from service.adapters.postgres.writeback import queue_writeback
from service.domain.alert_lifecycle import Transition
from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.fhir.jsonio import dumps
from service.usecases.ports.alerts import (
    AlertEventRow,
    CareSummary,
    LatestAssessmentView,
    StoredAlert,
    StoredCarePlan,
    StoredTask,
)
from service.usecases.ports.assessment import AssessmentRow, LatestAssessment
from service.usecases.ports.resources import StoredText

__all__ = [
    "PostgresAlertSession",
    "PostgresPatientSession",
    "all_patients",
    "care_plan_of",
    "due_for_sweep",
    "read_care_plan",
]

Conn = psycopg.Connection[dict[str, Any]]


def _json(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: dumps(v).decode())


def _alert(row: dict[str, Any]) -> StoredAlert:
    return StoredAlert(
        id=str(row["id"]),
        patient_id=row["patient_id"],
        code=row["code"],
        status=row["status"],
        priority=row["priority"],
        due=row["due_date"],
        episode=row["episode"],
        evidence=tuple(row["evidence"]),
        detail=row["detail"],
        opened_at=row["opened_at"],
        closed_at=row["closed_at"],
        snoozed_until=row["snoozed_until"],
        assignee=row["assignee"],
        revision=row["revision"],
    )


class PostgresAlertSession:
    """One transaction: implements the AlertSession port."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._facts = PostgresAssessmentSession(conn)

    def lock_patients(self, patient_ids: Sequence[str]) -> None:
        """See AlertSession."""
        self._facts.lock_patients(patient_ids)

    def facts_for_assessment(self, patient_ids: Sequence[str], as_of: AsOf) -> dict[str, list[Fact]]:
        """See AlertSession."""
        return self._facts.facts_for_assessment(patient_ids, as_of)

    def alerts_of(self, patient_ids: Sequence[str], closed_since: datetime) -> dict[str, list[StoredAlert]]:
        """See AlertSession."""
        out: dict[str, list[StoredAlert]] = defaultdict(list)
        rows = self._conn.execute(
            query("alerts_of_patients"), {"patient_ids": list(patient_ids), "closed_since": closed_since}
        )
        for row in rows:
            out[row["patient_id"]].append(_alert(row))
        return out

    def dismissed_episodes(self, patient_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        """See AlertSession."""
        rows = self._conn.execute(query("dismissed_episodes"), {"patient_ids": list(patient_ids)})
        return {(r["patient_id"], r["code"], r["episode"]) for r in rows}

    def insert_alerts(self, alerts: Sequence[StoredAlert]) -> None:
        """See AlertSession."""
        if not alerts:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                query("insert_alert"),
                [
                    {
                        "id": alert.id,
                        "patient_id": alert.patient_id,
                        "code": alert.code,
                        "priority": alert.priority,
                        "due_date": alert.due,
                        "episode": alert.episode,
                        "evidence": _json(list(alert.evidence)),
                        "detail": alert.detail,
                        "now": alert.opened_at,
                    }
                    for alert in alerts
                ],
            )

    def update_alert_finding(self, alert: StoredAlert, now: datetime) -> None:
        """See AlertSession."""
        self._conn.execute(
            query("update_alert_finding"),
            {
                "id": alert.id,
                "due_date": alert.due,
                "episode": alert.episode,
                "evidence": _json(list(alert.evidence)),
                "detail": alert.detail,
                "priority": alert.priority,
                "now": now,
            },
        )

    def set_alert_status(self, alert_id: str, status: str, now: datetime) -> None:
        """See AlertSession."""
        self._conn.execute(query("set_alert_status"), {"id": alert_id, "status": status, "now": now})

    def add_alert_events(self, events: Sequence[AlertEventRow]) -> None:
        """See AlertSession."""
        if events:
            with self._conn.cursor() as cur:
                cur.executemany(
                    query("insert_alert_event"),
                    [
                        {
                            "alert_id": e.alert_id,
                            "at": e.at,
                            "actor": e.actor,
                            "action": e.action,
                            "from_status": e.from_status,
                            "to_status": e.to_status,
                            "note": e.note,
                        }
                        for e in events
                    ],
                )

    def set_schedules(self, schedules: Sequence[tuple[str, date | None]], now: datetime) -> None:
        """See AlertSession."""
        if schedules:
            with self._conn.cursor() as cur:
                cur.executemany(
                    query("upsert_schedule"), [{"patient_id": p, "next_check": d, "now": now} for p, d in schedules]
                )

    def latest_assessment_views(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessmentView]:
        """See AlertSession."""
        rows = self._conn.execute(query("latest_assessment_views"), {"patient_ids": list(patient_ids)})
        return {
            r["patient_id"]: LatestAssessmentView(
                str(r["id"]), r["band"], dict(r["inputs"] or {}), tuple(r["missing"] or ())
            )
            for r in rows
        }

    def care_plans(self, patient_ids: Sequence[str]) -> dict[str, StoredCarePlan]:
        """See AlertSession."""
        rows = self._conn.execute(query("care_plans_of_patients"), {"patient_ids": list(patient_ids)})
        return {
            r["patient_id"]: StoredCarePlan(str(r["id"]), r["version"], r["content_hash"], dict(r["resource"]))
            for r in rows
        }

    def save_care_plans(self, plans: Sequence[tuple[str, StoredCarePlan]], now: datetime) -> None:
        """See AlertSession."""
        if not plans:
            return
        rows = [
            {
                "patient_id": patient_id,
                "id": plan.id,
                "version": plan.version,
                "content_hash": plan.content_hash,
                "now": now,
                "resource": _json(plan.resource),
            }
            for patient_id, plan in plans
        ]
        with self._conn.cursor() as cur:
            cur.executemany(query("insert_care_plan"), rows)
            cur.executemany(query("insert_care_plan_history"), rows)

    def tasks_of(self, patient_ids: Sequence[str]) -> dict[str, StoredTask]:
        """See AlertSession."""
        return tasks.tasks_of(self._conn, patient_ids)

    def save_tasks(self, stored: Sequence[StoredTask], now: datetime) -> None:
        """See AlertSession."""
        tasks.save_tasks(self._conn, stored, now)

    def patient_organizations(self, patient_ids: Sequence[str]) -> dict[str, str]:
        """See AlertSession."""
        return tasks.patient_organizations(self._conn, patient_ids)

    def task_for_update(self, identifier: str) -> StoredTask | None:
        """See AlertSession."""
        return tasks.task_for_update(self._conn, identifier)

    def mark_task_synced(
        self, alert_id: str, ehr_id: str | None, ehr_version: str | None, final_status: str | None
    ) -> None:
        """See AlertSession."""
        tasks.mark_task_synced(self._conn, alert_id, ehr_id, ehr_version, final_status)

    def queue_writeback(self, patient_ids: Sequence[str], now: datetime) -> None:
        """See AlertSession."""
        queue_writeback(self._conn, patient_ids, now)

    def update_care_summaries(self, rows: Sequence[CareSummary], now: datetime) -> None:
        """See AlertSession."""
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(
                    query("upsert_care_summary"),
                    [
                        {
                            "patient_id": r.patient_id,
                            "last_dose_date": r.last_dose_date,
                            "last_dose_drug": r.last_dose_drug,
                            "index_date": r.index_date,
                            "now": now,
                        }
                        for r in rows
                    ],
                )

    def alert_for_update(self, alert_id: str) -> StoredAlert | None:
        """See AlertSession."""
        row = self._conn.execute(query("alert_for_update"), {"id": alert_id}).fetchone()
        return _alert(row) if row else None

    def apply_alert_action(self, alert_id: str, transition: Transition, now: datetime) -> None:
        """See AlertSession."""
        self._conn.execute(
            query("apply_alert_action"),
            {
                "id": alert_id,
                "status": transition.status,
                "assignee": transition.assignee,
                "snoozed_until": transition.snoozed_until,
                "dismiss_reason": transition.dismiss_reason,
                "now": now,
            },
        )

    def alert_history(self, alert_id: str) -> list[AlertEventRow]:
        """See AlertSession."""
        rows = self._conn.execute(query("alert_history"), {"id": alert_id})
        return [
            AlertEventRow(alert_id, r["at"], r["actor"], r["action"], r["from_status"], r["to_status"], r["note"])
            for r in rows
        ]


class PostgresPatientSession(PostgresAlertSession):
    """One transaction for the patient pipeline: the alert session and the assessment session's writes in one."""

    def coverage_of(self, patient_ids: Sequence[str]) -> dict[str, set[str]]:
        """See AssessmentSession."""
        return self._facts.coverage_of(patient_ids)

    def latest_assessments(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessment]:
        """See AssessmentSession."""
        return self._facts.latest_assessments(patient_ids)

    def insert_assessments(self, rows: Sequence[AssessmentRow]) -> None:
        """See AssessmentSession."""
        self._facts.insert_assessments(rows)


def due_for_sweep(conn: Conn, today: date, after: str, limit: int) -> list[str]:
    """Patients whose next check date has come."""
    rows = conn.execute(query("due_for_sweep"), {"today": today, "after": after, "limit": limit})
    return [r["patient_id"] for r in rows]


def all_patients(conn: Conn, after: str, limit: int) -> list[str]:
    """Every patient refracture has heard of, in id order after a keyset position."""
    rows = conn.execute(query("all_patients"), {"after": after, "limit": limit})
    return [r["patient_id"] for r in rows]


def read_care_plan(conn: Conn, plan_id: str) -> StoredText | None:
    """One CarePlan as JSON text."""
    row = conn.execute(query("read_care_plan"), {"id": plan_id}).fetchone()
    return StoredText(row["body"], row["version"], row["updated_at"]) if row else None


def care_plan_of(conn: Conn, patient_id: str) -> str | None:
    """A patient's CarePlan as JSON text."""
    row = conn.execute(query("care_plan_of_patient"), {"patient_id": patient_id}).fetchone()
    return str(row["body"]) if row else None
