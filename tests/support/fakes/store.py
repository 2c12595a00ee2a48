"""MemoryStore: every store port of the PostgreSQL adapters (service/adapters/postgres/store.py) that the clinical use
cases need, over one in-memory database — ingest (Store), AssessmentStore, AlertStore, PatientStore and
WritebackStore.

Like those adapters, the write-back methods are each their own short transaction (the EHR is called between them),
and reads outside a session see only committed data. Records go in through the real Ingestor and Normaliser, so the
use cases read the same facts they would read from PostgreSQL.
"""

from __future__ import annotations

import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from service.domain.facts import FactKind
from service.fhir.assessment_record import render_risk_assessment
from service.fhir.jsonio import dumps
from service.usecases.ports.alerts import AlertStore, StoredAlert, StoredTask
from service.usecases.ports.assessment import AssessmentStore
from service.usecases.ports.ingest import Store
from service.usecases.ports.patient import PatientStore
from service.usecases.ports.resources import StoredText
from service.usecases.ports.writeback import ClaimedWriteback, DeliveryRecord, WritebackState, WritebackStore
from tests.support.fakes import writeback
from tests.support.fakes.clinical import MemoryPatientSession, latest_assessment
from tests.support.fakes.ingest import MemoryIngestStore
from tests.support.fakes.tables import AssessmentRecord, MemoryDatabase, WritebackJob

__all__ = ["MemoryStore"]


class MemoryStore(MemoryIngestStore):
    """The PostgreSQL store's ports over dictionaries (see the module docstring)."""

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        super().__init__(database)
        self.calls: Counter[str] = Counter()  # session method -> times called, for tests

    # --- sessions ---------------------------------------------------------------------------------------------
    @contextmanager
    def _clinical(self, kind: str) -> Iterator[MemoryPatientSession]:
        self.calls[kind] += 1
        with self.database.transaction() as tables:
            yield MemoryPatientSession(tables, self.calls)

    @contextmanager
    def assessment_session(self) -> Iterator[MemoryPatientSession]:
        with self._clinical("assessment_session") as session:
            yield session

    @contextmanager
    def alert_session(self) -> Iterator[MemoryPatientSession]:
        with self._clinical("alert_session") as session:
            yield session

    @contextmanager
    def patient_session(self) -> Iterator[MemoryPatientSession]:
        with self._clinical("patient_session") as session:
            yield session

    # --- AssessmentStore reads --------------------------------------------------------------------------------
    def read_risk_assessment(self, assessment_id: str) -> StoredText | None:
        if not _is_uuid(assessment_id):
            return None
        with self.database.reading() as t:
            found = next((a for a in t.assessments if a.row.id == assessment_id), None)
            return StoredText(_render(found), 1, found.row.assessed_at) if found else None

    def risk_assessments_of(self, patient_id: str, limit: int) -> list[str]:
        with self.database.reading() as t:
            mine = [a for a in t.assessments if a.row.patient_id == patient_id]
            mine.sort(key=lambda a: (a.row.assessed_at, a.row.sequence_no), reverse=True)
            return [_render(a) for a in mine[:limit]]

    def patients_to_rescore(self, after: str, limit: int, part: int = 0, parts: int = 1) -> list[str]:
        """Patients with an augmentation on record. Partitioned by crc32, not PostgreSQL's hashtextextended: the
        parts differ from the adapter's, but are disjoint and cover everyone all the same."""
        with self.database.reading() as t:
            found = {
                item.patient_id
                for facts in t.facts.values()
                for item in facts
                if item.fact.kind is FactKind.VERTEBRAL_AUGMENTATION and item.patient_id > after
            }
        mine = [p for p in found if parts == 1 or zlib.crc32(p.encode()) % parts == part]
        return sorted(mine)[:limit]

    # --- AlertStore reads -------------------------------------------------------------------------------------
    def due_for_sweep(self, today: date, after: str, limit: int) -> list[str]:
        with self.database.reading() as t:
            due = [p for p, d in t.schedules.items() if d is not None and d <= today and p > after]
        return sorted(due)[:limit]

    def all_patients(self, after: str, limit: int) -> list[str]:
        with self.database.reading() as t:
            return sorted(p for p in t.changed if p > after)[:limit]

    def read_care_plan(self, plan_id: str) -> StoredText | None:
        if not _is_uuid(plan_id):
            return None
        with self.database.reading() as t:
            plan = next((p for p in t.care_plans.values() if p.id == plan_id), None)
            return StoredText(dumps(plan.resource).decode(), plan.version, plan.updated_at) if plan else None

    def care_plan_of(self, patient_id: str) -> str | None:
        with self.database.reading() as t:
            plan = t.care_plans.get(patient_id)
            return dumps(plan.resource).decode() if plan else None

    # --- WritebackStore: one short transaction per call --------------------------------------------------------
    def claim_writebacks(
        self, now: datetime, lease_until: datetime, limit: int, patient_ids: Sequence[str] | None
    ) -> list[ClaimedWriteback]:
        with self.database.transaction() as t:
            return writeback.claim(t, now, lease_until, limit, patient_ids)

    def writeback_state(self, patient_id: str) -> WritebackState:
        with self.database.reading() as t:
            return writeback.state(t, patient_id)

    def complete_writeback(self, job: ClaimedWriteback, record: DeliveryRecord, now: datetime) -> None:
        with self.database.transaction() as t:
            writeback.complete(t, job, record, now)

    def retry_writeback(
        self, patient_id: str, next_attempt_at: datetime, error: str, status: int | None, answer: Any, now: datetime
    ) -> None:
        with self.database.transaction() as t:
            writeback.retry(t, patient_id, next_attempt_at, error, status, answer, now)

    def dead_writeback(self, patient_id: str, error: str, status: int | None, answer: Any, now: datetime) -> None:
        with self.database.transaction() as t:
            writeback.dead(t, patient_id, error, status, answer, now)

    def release_writeback(self, patient_id: str, next_attempt_at: datetime, now: datetime) -> None:
        with self.database.transaction() as t:
            writeback.release(t, patient_id, next_attempt_at, now)

    def set_task_ehr_version(self, alert_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        with self.database.transaction() as t:
            if (task := t.tasks.get(alert_id)) is not None:
                t.tasks[alert_id] = _with_ehr(task, ehr_id, ehr_version)

    def set_plan_ehr_version(self, patient_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        with self.database.transaction() as t:
            if (plan := t.care_plans.get(patient_id)) is not None:
                plan.ehr_version = ehr_version
                plan.ehr_id = ehr_id if ehr_id is not None else plan.ehr_id

    def save_ehr_state(self, base_url: str | None, mode: str, detail: str, now: datetime) -> None:
        with self.database.transaction() as t:
            t.ehr_state = {"base_url": base_url, "mode": mode, "detail": detail, "checked_at": now}

    def read_ehr_state(self) -> dict[str, Any] | None:
        with self.database.reading() as t:
            return dict(t.ehr_state) if t.ehr_state is not None else None

    def writeback_counts(self) -> dict[str, Any]:
        with self.database.reading() as t:
            return writeback.counts(t)

    def dead_writebacks(self, limit: int) -> list[dict[str, Any]]:
        with self.database.reading() as t:
            return writeback.dead_jobs(t, limit)

    def replay_writebacks(self, patient_ids: Sequence[str] | None, now: datetime) -> list[str]:
        with self.database.transaction() as t:
            return writeback.replay(t, patient_ids, now)

    # --- what tests look at -----------------------------------------------------------------------------------
    def alerts(self, patient_id: str) -> dict[str, str]:
        """The patient's alerts, code -> status, in the order they were opened (a later one of a code wins)."""
        return {a.code: a.status for a in self.tables.alerts.values() if a.patient_id == patient_id}

    def alert_rows(self, patient_id: str) -> list[StoredAlert]:
        """The patient's alerts as stored, oldest first."""
        return [a for a in self.tables.alerts.values() if a.patient_id == patient_id]

    def assessments_of(self, patient_id: str) -> list[AssessmentRecord]:
        """The patient's stored assessments, oldest first."""
        return sorted(
            (a for a in self.tables.assessments if a.row.patient_id == patient_id), key=lambda a: a.row.sequence_no
        )

    def latest(self, patient_id: str) -> AssessmentRecord | None:
        """The patient's newest assessment."""
        return latest_assessment(self.tables, patient_id)

    def care_plan(self, patient_id: str) -> dict[str, Any] | None:
        """The patient's CarePlan resource."""
        plan = self.tables.care_plans.get(patient_id)
        return plan.resource if plan else None

    def job(self, patient_id: str) -> WritebackJob | None:
        """The patient's write-back outbox row."""
        return self.tables.writebacks.get(patient_id)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False  # the adapter's ids are UUIDs: anything else is simply not one of ours
    return True


def _render(found: AssessmentRecord) -> str:
    row = found.row
    resource = render_risk_assessment(row.id, row.patient_id, row.model_version, row.inputs_hash, row.result)
    return dumps(resource).decode()


def _with_ehr(task: StoredTask, ehr_id: str | None, ehr_version: str | None) -> StoredTask:
    return replace(task, ehr_version=ehr_version, ehr_id=ehr_id if ehr_id is not None else task.ehr_id)


def _conforms(store: MemoryStore) -> None:
    """Never called: mypy checks here that MemoryStore implements each port. tests/ are not under ``make lint``'s
    mypy; check with ``mypy --strict --follow-imports=silent tests/support/fakes`` (silent: tests/support/servers.py,
    reached through tests/ehr_standin.py, has errors of its own)."""
    ingest: Store = store
    assessments: AssessmentStore = store
    alerts: AlertStore = store
    patients: PatientStore = store
    writebacks: WritebackStore = store
    del ingest, assessments, alerts, patients, writebacks
