"""The assessment, alert and patient-pipeline sessions in memory (one class: PatientSession is both).

Each method does what its query in service/adapters/postgres/queries.sql and tasks.sql does, row for row: what it
reads (active alerts and those closed since a moment, the newest assessment by sequence number, ...), what an upsert
keeps of the old row (a care plan's and a Task's EHR ids), and the unique constraints (one active alert per patient
and code, one assessment per patient and sequence number).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Final

from service.domain.alert_lifecycle import Transition
from service.domain.facts import Fact
from service.domain.latest_only import AsOf, for_assessment
from service.fhir.resource_types import INPUT_TYPES
from service.usecases.ports.alerts import (
    AlertEventRow,
    CareSummary,
    LatestAssessmentView,
    StoredAlert,
    StoredCarePlan,
    StoredTask,
)
from service.usecases.ports.assessment import AssessmentRow, LatestAssessment
from tests.support.fakes.tables import AssessmentRecord, PlanRecord, Tables, jsonb, unique_violation
from tests.support.fakes.writeback import queue_writeback

__all__ = ["MemoryPatientSession", "latest_assessment"]

_CLOSING: Final = frozenset({"resolved", "dismissed"})


def latest_assessment(tables: Tables, patient_id: str) -> AssessmentRecord | None:
    """The patient's newest assessment (highest sequence number)."""
    mine = [a for a in tables.assessments if a.row.patient_id == patient_id]
    return max(mine, key=lambda a: a.row.sequence_no) if mine else None


class MemoryPatientSession:
    """One transaction: the AssessmentSession, AlertSession and PatientSession ports."""

    def __init__(self, tables: Tables, calls: Counter[str]) -> None:
        self._t = tables
        self._calls = calls  # the store's count of calls per method, for tests ("facts read once")

    # --- shared -----------------------------------------------------------------------------------------------
    def lock_patients(self, patient_ids: Sequence[str]) -> None:
        self._calls["lock_patients"] += 1
        # The port asks callers for sorted ids (no deadlocks between workers): a fake can hold them to it.
        if list(patient_ids) != sorted(patient_ids):
            raise AssertionError(f"lock_patients wants sorted ids, got {list(patient_ids)}")

    def facts_for_assessment(self, patient_ids: Sequence[str], as_of: AsOf) -> dict[str, list[Fact]]:
        self._calls["facts_for_assessment"] += 1
        # The query's cut is the domain's (service/domain/latest_only.py); the parity test
        # (tests/integration/test_fakes_parity.py) holds the two to the same rows.
        return {p: for_assessment(facts, as_of) for p, facts in self.facts_of(patient_ids).items()}

    def facts_of(self, patient_ids: Sequence[str]) -> dict[str, list[Fact]]:
        """Each patient's whole record of facts (PostgresAssessmentSession.facts_of)."""
        wanted = set(patient_ids)
        out: dict[str, list[Fact]] = {}
        for (source_type, source_id), facts in self._t.facts.items():
            for item in facts:
                if item.patient_id in wanted:
                    stored = replace(
                        item.fact,
                        attrs=jsonb(dict(item.fact.attrs)),  # a jsonb column: tuples come back as lists, dates as text
                        source=f"{source_type}/{source_id}",
                        recorded_at=self._t.recorded.get((source_type, source_id)),
                    )
                    out.setdefault(item.patient_id, []).append(stored)
        return out

    def queue_writeback(self, patient_ids: Sequence[str], now: datetime) -> None:
        queue_writeback(self._t, patient_ids, now)

    # --- AssessmentSession ----------------------------------------------------------------------------------
    def coverage_of(self, patient_ids: Sequence[str]) -> dict[str, set[str]]:
        wanted = set(patient_ids)
        out: dict[str, set[str]] = {}
        for write in self._t.resources.values():
            if write.patient_id in wanted and write.resource_type in INPUT_TYPES and not write.entered_in_error:
                out.setdefault(write.patient_id, set()).add(write.resource_type)
        return out

    def latest_assessments(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessment]:
        out: dict[str, LatestAssessment] = {}
        for patient_id in patient_ids:
            if (found := latest_assessment(self._t, patient_id)) is not None:
                out[patient_id] = LatestAssessment(
                    found.row.model_version, found.row.inputs_hash, found.row.sequence_no
                )
        return out

    def insert_assessments(self, rows: Sequence[AssessmentRow]) -> None:
        taken = {(a.row.patient_id, a.row.sequence_no) for a in self._t.assessments}
        ids = {a.row.id for a in self._t.assessments}
        for row in rows:
            if row.id in ids or (row.patient_id, row.sequence_no) in taken:
                raise unique_violation(f"assessment {row.id} / {row.patient_id} #{row.sequence_no}")
            taken.add((row.patient_id, row.sequence_no))
            ids.add(row.id)
            self._t.assessments.append(AssessmentRecord(replace(row, result=jsonb(row.result))))
            self._t.risk_summaries[row.patient_id] = (row.band, row.probability, row.assessed_at)

    # --- AlertSession -----------------------------------------------------------------------------------------
    def alerts_of(self, patient_ids: Sequence[str], closed_since: datetime) -> dict[str, list[StoredAlert]]:
        wanted = set(patient_ids)
        out: dict[str, list[StoredAlert]] = {}
        for alert in self._t.alerts.values():
            if alert.patient_id in wanted and (alert.closed_at is None or alert.closed_at > closed_since):
                out.setdefault(alert.patient_id, []).append(alert)
        return out

    def dismissed_episodes(self, patient_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        wanted = set(patient_ids)
        return {
            (a.patient_id, a.code, a.episode)
            for a in self._t.alerts.values()
            if a.patient_id in wanted and a.status == "dismissed"
        }

    def insert_alerts(self, alerts: Sequence[StoredAlert]) -> None:
        for alert in alerts:
            active = {(a.patient_id, a.code) for a in self._t.alerts.values() if a.active}
            if alert.id in self._t.alerts or (alert.patient_id, alert.code) in active:
                raise unique_violation(f"alert {alert.id} ({alert.patient_id}, {alert.code})")
            # insert_alert: always open, revision 1, opened now; the rest as given.
            self._t.alerts[alert.id] = replace(
                alert, status="open", closed_at=None, snoozed_until=None, assignee=None, revision=1
            )

    def update_alert_finding(self, alert: StoredAlert, now: datetime) -> None:
        del now  # updated_at: not kept
        stored = self._t.alerts.get(alert.id)
        if stored is not None:
            self._t.alerts[alert.id] = replace(
                stored,
                due=alert.due,
                episode=alert.episode,
                evidence=tuple(alert.evidence),
                detail=alert.detail,
                priority=alert.priority,
                revision=stored.revision + 1,
            )

    def set_alert_status(self, alert_id: str, status: str, now: datetime) -> None:
        stored = self._t.alerts.get(alert_id)
        if stored is not None:
            self._t.alerts[alert_id] = replace(
                stored,
                status=status,
                revision=stored.revision + 1,
                closed_at=now if status in _CLOSING else None,
                snoozed_until=stored.snoozed_until if status == "snoozed" else None,
            )

    def add_alert_events(self, events: Sequence[AlertEventRow]) -> None:
        for event in events:
            if event.alert_id not in self._t.alerts:
                raise AssertionError(f"alert_event refers to no alert: {event.alert_id}")  # a foreign key
            self._t.alert_events.append(event)

    def set_schedules(self, schedules: Sequence[tuple[str, date | None]], now: datetime) -> None:
        del now
        for patient_id, next_check in schedules:
            self._t.schedules[patient_id] = next_check

    def latest_assessment_views(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessmentView]:
        out: dict[str, LatestAssessmentView] = {}
        for patient_id in patient_ids:
            if (found := latest_assessment(self._t, patient_id)) is not None:
                result = found.row.result
                out[patient_id] = LatestAssessmentView(
                    found.row.id,
                    found.row.band,
                    dict(result.get("inputs") or {}),
                    tuple(result.get("missing") or ()),
                )
        return out

    def care_plans(self, patient_ids: Sequence[str]) -> dict[str, StoredCarePlan]:
        return {
            p: StoredCarePlan(plan.id, plan.version, plan.content_hash, jsonb(plan.resource))
            for p in patient_ids
            if (plan := self._t.care_plans.get(p)) is not None
        }

    def save_care_plans(self, plans: Sequence[tuple[str, StoredCarePlan]], now: datetime) -> None:
        for patient_id, plan in plans:
            if (plan.id, plan.version) in self._t.care_plan_history:
                raise unique_violation(f"care_plan_history {plan.id} v{plan.version}")
            resource = jsonb(plan.resource)
            stored = self._t.care_plans.get(patient_id)
            if stored is None:
                if any(p.id == plan.id for p in self._t.care_plans.values()):
                    raise unique_violation(f"care_plan id {plan.id}")
                self._t.care_plans[patient_id] = PlanRecord(
                    patient_id, plan.id, plan.version, plan.content_hash, resource, now
                )
            else:  # ON CONFLICT: the EHR's id and versions stay
                stored.version, stored.content_hash, stored.resource, stored.updated_at = (
                    plan.version,
                    plan.content_hash,
                    resource,
                    now,
                )
            self._t.care_plan_history[(plan.id, plan.version)] = resource

    def tasks_of(self, patient_ids: Sequence[str]) -> dict[str, StoredTask]:
        wanted = set(patient_ids)
        return {a: _read(t) for a, t in self._t.tasks.items() if t.patient_id in wanted}

    def save_tasks(self, tasks: Sequence[StoredTask], now: datetime) -> None:
        for task in tasks:
            if task.alert_id not in self._t.alerts:
                raise AssertionError(f"alert_task refers to no alert: {task.alert_id}")  # a foreign key
            stored = self._t.tasks.get(task.alert_id)
            if stored is None:
                if any(t.id == task.id for t in self._t.tasks.values()):
                    raise unique_violation(f"alert_task id {task.id}")
                # A new row: only the columns save_task names; the EHR's columns start empty.
                self._t.tasks[task.alert_id] = StoredTask(
                    task.alert_id,
                    task.patient_id,
                    task.id,
                    task.version,
                    task.content_hash,
                    jsonb(task.resource),
                    delivered_version=task.delivered_version,
                )
            else:  # ON CONFLICT: the EHR's id, versions and final status stay
                self._t.tasks[task.alert_id] = replace(
                    stored,
                    version=task.version,
                    content_hash=task.content_hash,
                    resource=jsonb(task.resource),
                    delivered_version=task.delivered_version,
                )
            self._t.task_updated[task.alert_id] = now

    def patient_organizations(self, patient_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for patient_id in patient_ids:
            write = self._t.resources.get(("Patient", patient_id))
            organization = (write.body.get("managingOrganization") or {}).get("reference") if write else None
            if organization is not None:
                out[patient_id] = str(organization)
        return out

    def task_for_update(self, identifier: str) -> StoredTask | None:
        try:
            uuid.UUID(identifier)
        except ValueError:
            return None
        return next((_read(t) for t in self._t.tasks.values() if t.id == identifier), None)

    def mark_task_synced(
        self, alert_id: str, ehr_id: str | None, ehr_version: str | None, final_status: str | None
    ) -> None:
        stored = self._t.tasks.get(alert_id)
        if stored is not None:
            self._t.tasks[alert_id] = replace(
                stored,
                synced_ehr_version=ehr_version,
                ehr_id=stored.ehr_id if stored.ehr_id is not None else ehr_id,
                ehr_final_status=final_status if final_status is not None else stored.ehr_final_status,
            )

    def update_care_summaries(self, rows: Sequence[CareSummary], now: datetime) -> None:
        del now
        for row in rows:
            self._t.care_summaries[row.patient_id] = row

    def alert_for_update(self, alert_id: str) -> StoredAlert | None:
        return self._t.alerts.get(alert_id)

    def apply_alert_action(self, alert_id: str, transition: Transition, now: datetime) -> None:
        stored = self._t.alerts.get(alert_id)
        if stored is None:
            return
        self._t.alerts[alert_id] = replace(
            stored,
            status=transition.status,
            assignee=transition.assignee,
            snoozed_until=transition.snoozed_until,
            revision=stored.revision + 1,
            closed_at=now if transition.status in _CLOSING else None,
        )
        self._t.dismiss_reasons[alert_id] = transition.dismiss_reason

    def alert_history(self, alert_id: str) -> list[AlertEventRow]:
        mine = [e for e in self._t.alert_events if e.alert_id == alert_id]
        return sorted(mine, key=lambda e: e.at)  # ORDER BY at, id: a stable sort keeps the insertion order


def _read(task: StoredTask) -> StoredTask:
    return replace(task, resource=jsonb(task.resource))
