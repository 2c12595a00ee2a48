"""The PostgreSQL store: the ingest session, reads, and the patient-change outbox."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from service.adapters.postgres import alerts, assessments, tasks, writeback
from service.adapters.postgres.alerts import PostgresAlertSession, PostgresPatientSession
from service.adapters.postgres.assessments import PostgresAssessmentSession
from service.adapters.postgres.audit import append_audit
from service.adapters.postgres.errors import pipelined_transaction, pooled_transaction, translate_errors
from service.adapters.postgres.queries import query
from service.adapters.postgres.summaries import upsert_demographics
from service.domain.audit_record import AuditRecord
from service.domain.patient import Demographics
from service.fhir.jsonio import dumps
from service.usecases.ports.ingest import ResourceWrite, SourcedFact, StoredVersion, UnrecognisedCount
from service.usecases.ports.resources import ResourceKey, StoredText
from service.usecases.ports.writeback import ClaimedWriteback, DeliveryRecord, WritebackState

__all__ = [
    "PostgresAlertStore",
    "PostgresAssessmentStore",
    "PostgresIngestStore",
    "PostgresOutboxStore",
    "PostgresPatientStore",
    "PostgresTaskReads",
    "PostgresWritebackStore",
    "translate_errors",
]

Conn = psycopg.Connection[dict[str, Any]]


def _dumps(value: Any) -> str:
    # Keeps Decimal digits exactly (1.50 stays 1.50), which PostgreSQL's numeric then keeps too.
    return dumps(value).decode()


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_dumps)


class PostgresSession:
    """One transaction: implements the IngestSession port."""

    def __init__(self, conn: Conn, pipelined: bool = False) -> None:
        self._conn = conn
        self._pipelined = pipelined  # in pipeline mode: COPY is not available there

    def current_versions(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, StoredVersion]:
        """See IngestSession."""
        if not keys:
            return {}
        rows = self._conn.execute(
            query("current_versions"), {"types": [k[0] for k in keys], "ids": [k[1] for k in keys]}
        ).fetchall()
        return {
            (r["resource_type"], r["id"]): StoredVersion(
                r["resource_type"],
                r["id"],
                r["version_id"],
                r["last_updated_at"],
                bytes(r["content_hash"]),
                r["patient_id"],
            )
            for r in rows
        }

    def write_resources(self, inserts: Sequence[ResourceWrite], updates: Sequence[ResourceWrite]) -> None:
        """See IngestSession."""
        with self._conn.cursor() as cur:
            if inserts:
                cur.executemany(query("insert_resource"), [_write_params(w) for w in inserts])
            if updates:
                cur.executemany(query("update_resource"), [_write_params(w) for w in updates])

    def replace_facts(self, sources: Sequence[ResourceKey], facts: Sequence[SourcedFact], now: datetime) -> set[str]:
        """See IngestSession."""
        old = (
            self._conn.execute(
                query("delete_facts_of_sources"),
                {"types": [s[0] for s in sources], "ids": [s[1] for s in sources]},
            ).fetchall()
            if sources
            else []
        )
        if facts:
            rows = [_fact_row(item, now) for item in facts]
            with self._conn.cursor() as cur:
                if self._pipelined:
                    # Queued with the other writes and sent with the commit; a COPY would cost two round trips.
                    cur.executemany(query("insert_fact"), rows)
                else:
                    with cur.copy(query("copy_facts")) as copy:
                        for row in rows:
                            copy.write_row(row)
        return {r["patient_id"] for r in old}

    def count_unrecognised(self, counts: Sequence[UnrecognisedCount], now: datetime) -> None:
        """See IngestSession."""
        with self._conn.cursor() as cur:
            cur.executemany(
                query("count_unrecognised"),
                [
                    {
                        "resource_type": c.resource_type,
                        "system": c.system,
                        "code": c.code,
                        "display": c.display,
                        "occurrences": c.occurrences,
                        "now": now,
                    }
                    for c in counts
                ],
            )

    def mark_patients_changed(self, patient_ids: Iterable[str], now: datetime, claimed: bool = False) -> None:
        """See IngestSession. Sorted, so two transactions lock shared patients in the same order."""
        ids = sorted(set(patient_ids))
        if ids:
            with self._conn.cursor() as cur:
                cur.executemany(
                    query("mark_patient_changed"), [{"patient_id": p, "now": now, "claimed": claimed} for p in ids]
                )

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """See IngestSession: the audit rows of the request ride in the write's own transaction."""
        if records:
            append_audit(self._conn, records)

    def upsert_demographics(self, rows: Sequence[Demographics], now: datetime) -> None:
        """See IngestSession."""
        upsert_demographics(self._conn, rows, now)

    def medication(self, ref: str) -> dict[str, Any] | None:
        """See IngestSession."""
        _, _, medication_id = ref.partition("/")
        row = self._conn.execute(
            query("read_resource_json"), {"resource_type": "Medication", "id": medication_id}
        ).fetchone()
        return dict(row["body"]) if row else None

    def dependents_of_medication(self, ref: str) -> list[dict[str, Any]]:
        """See IngestSession."""
        rows = self._conn.execute(query("dependents_of_medication"), {"medication_ref": ref}).fetchall()
        return [dict(r["body"]) for r in rows]

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """See IngestSession."""
        return _read_text(self._conn, key)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """See IngestSession."""
        with translate_errors(), self._conn.transaction():
            yield


class PostgresOutbox:
    """The patient-change outbox inside one transaction: implements the ChangeOutbox port."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    def claim_to_publish(self, now: datetime, redeliver_after_s: float, limit: int) -> list[str]:
        """See ChangeOutbox."""
        rows = self._conn.execute(
            query("claim_changes_to_publish"),
            {"now": now, "redeliver_after_s": redeliver_after_s, "limit": limit},
        ).fetchall()
        return sorted(r["patient_id"] for r in rows)

    def claim_given(self, patient_ids: Sequence[str], now: datetime) -> list[str]:
        """See ChangeOutbox."""
        rows = self._conn.execute(
            query("claim_given_changes"), {"patient_ids": sorted(patient_ids), "now": now}
        ).fetchall()
        return sorted(r["patient_id"] for r in rows)

    def pending(self, patient_ids: Sequence[str]) -> dict[str, int]:
        """See ChangeOutbox."""
        rows = self._conn.execute(query("pending_changes"), {"patient_ids": list(patient_ids)}).fetchall()
        return {r["patient_id"]: r["changed_seq"] for r in rows}

    def mark_done(self, done: Mapping[str, int], now: datetime) -> None:
        """See ChangeOutbox."""
        if done:
            ids = sorted(done)
            self._conn.execute(
                query("mark_changes_done"), {"patient_ids": ids, "seqs": [done[p] for p in ids], "now": now}
            )

    def release(self, patient_ids: Sequence[str]) -> None:
        """See ChangeOutbox."""
        if patient_ids:
            self._conn.execute(query("release_changes"), {"patient_ids": sorted(patient_ids)})

    def backlog(self) -> tuple[int, datetime | None]:
        """See ChangeOutbox."""
        row = self._conn.execute(query("change_backlog")).fetchone()
        return (int(row["pending"]), row["oldest_changed_at"]) if row else (0, None)


class _Pooled:
    """Transactions over a connection pool: each adapter below is one port over the same pool."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def _transaction(self) -> contextlib.AbstractContextManager[Conn]:
        return pooled_transaction(self._pool)


class PostgresIngestStore(_Pooled):
    """Implements the Store port: the ingest session and the stored resources' reads."""

    @contextlib.contextmanager
    def session(self, pipelined: bool = False) -> Iterator[PostgresSession]:
        """See Store."""
        if not pipelined:
            with self._transaction() as conn:
                yield PostgresSession(conn)
            return
        with pipelined_transaction(self._pool) as conn:
            yield PostgresSession(conn, pipelined=True)

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """See Store."""
        with self._transaction() as conn:
            return _read_text(conn, key)

    def unrecognised_codes(self, limit: int) -> list[UnrecognisedCount]:
        """See Store."""
        with self._transaction() as conn:
            rows = conn.execute(query("list_unrecognised"), {"limit": limit}).fetchall()
        return [
            UnrecognisedCount(
                r["resource_type"],
                r["system"],
                r["code"],
                r["display"],
                r["occurrences"],
                r["first_seen_at"],
                r["last_seen_at"],
            )
            for r in rows
        ]

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self._transaction() as conn:
            conn.execute("SELECT 1")


class PostgresOutboxStore(_Pooled):
    """Implements the OutboxStore port: the patient-change outbox."""

    @contextlib.contextmanager
    def outbox(self) -> Iterator[PostgresOutbox]:
        """See OutboxStore."""
        with self._transaction() as conn:
            yield PostgresOutbox(conn)


class PostgresAssessmentStore(_Pooled):
    """Implements the AssessmentStore port."""

    @contextlib.contextmanager
    def assessment_session(self) -> Iterator[PostgresAssessmentSession]:
        """See AssessmentStore."""
        with self._transaction() as conn:
            yield PostgresAssessmentSession(conn)

    def read_risk_assessment(self, assessment_id: str) -> StoredText | None:
        """See AssessmentStore."""
        try:
            uuid.UUID(assessment_id)
        except ValueError:
            return None  # assessment ids are UUIDs: anything else is simply not one of ours
        with self._transaction() as conn:
            return assessments.read_risk_assessment(conn, assessment_id)

    def risk_assessments_of(self, patient_id: str, limit: int) -> list[str]:
        """See AssessmentStore."""
        with self._transaction() as conn:
            return assessments.risk_assessments_of(conn, patient_id, limit)

    def patients_to_rescore(self, after: str, limit: int, part: int = 0, parts: int = 1) -> list[str]:
        """See AssessmentStore."""
        with self._transaction() as conn:
            return assessments.patients_to_rescore(conn, after, limit, part, parts)


class PostgresAlertStore(_Pooled):
    """Implements the AlertStore port."""

    @contextlib.contextmanager
    def alert_session(self) -> Iterator[PostgresAlertSession]:
        """See AlertStore."""
        with self._transaction() as conn:
            yield PostgresAlertSession(conn)

    def due_for_sweep(self, today: date, after: str, limit: int) -> list[str]:
        """See AlertStore."""
        with self._transaction() as conn:
            return alerts.due_for_sweep(conn, today, after, limit)

    def all_patients(self, after: str, limit: int) -> list[str]:
        """See AlertStore."""
        with self._transaction() as conn:
            return alerts.all_patients(conn, after, limit)

    def read_care_plan(self, plan_id: str) -> StoredText | None:
        """See AlertStore."""
        try:
            uuid.UUID(plan_id)
        except ValueError:
            return None
        with self._transaction() as conn:
            return alerts.read_care_plan(conn, plan_id)

    def care_plan_of(self, patient_id: str) -> str | None:
        """See AlertStore."""
        with self._transaction() as conn:
            return alerts.care_plan_of(conn, patient_id)


class PostgresPatientStore(_Pooled):
    """Implements the PatientStore port: one transaction for a patient's assessment and alerts."""

    @contextlib.contextmanager
    def patient_session(self) -> Iterator[PostgresPatientSession]:
        """See PatientStore."""
        with self._transaction() as conn:
            yield PostgresPatientSession(conn)


class PostgresTaskReads(_Pooled):
    """Implements the TaskReads port: the alerts' Tasks, for EHRs that pull them."""

    def read_task(self, task_id: str) -> StoredText | None:
        """See TaskReads."""
        with self._transaction() as conn:
            return tasks.read_task(conn, task_id)

    def search_tasks(
        self, patient_id: str | None, statuses: Sequence[str] | None, task_id: str | None, limit: int
    ) -> list[str]:
        """See TaskReads."""
        with self._transaction() as conn:
            return tasks.search_tasks(conn, patient_id, statuses, task_id, limit)


class PostgresWritebackStore(_Pooled):
    """Implements the WritebackStore port: each call is its own short transaction (the EHR call happens between)."""

    def set_task_ehr_version(self, alert_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            tasks.set_task_ehr_version(conn, alert_id, ehr_id, ehr_version)

    def claim_writebacks(
        self, now: datetime, lease_until: datetime, limit: int, patient_ids: Sequence[str] | None
    ) -> list[ClaimedWriteback]:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.claim(conn, now, lease_until, limit, patient_ids)

    def writeback_state(self, patient_id: str) -> WritebackState:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.state(conn, patient_id)

    def complete_writeback(self, job: ClaimedWriteback, record: DeliveryRecord, now: datetime) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.complete(conn, job, record, now)

    def retry_writeback(
        self, patient_id: str, next_attempt_at: datetime, error: str, status: int | None, answer: Any, now: datetime
    ) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.retry(conn, patient_id, next_attempt_at, error, status, answer, now)

    def dead_writeback(self, patient_id: str, error: str, status: int | None, answer: Any, now: datetime) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.dead(conn, patient_id, error, status, answer, now)

    def release_writeback(self, patient_id: str, next_attempt_at: datetime, now: datetime) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.release(conn, patient_id, next_attempt_at, now)

    def set_plan_ehr_version(self, patient_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.set_plan_ehr_version(conn, patient_id, ehr_id, ehr_version)

    def save_ehr_state(self, base_url: str | None, mode: str, detail: str, now: datetime) -> None:
        """See WritebackStore."""
        with self._transaction() as conn:
            writeback.save_ehr_state(conn, base_url, mode, detail, now)

    def read_ehr_state(self) -> dict[str, Any] | None:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.read_ehr_state(conn)

    def writeback_counts(self) -> dict[str, Any]:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.counts(conn)

    def dead_writebacks(self, limit: int) -> list[dict[str, Any]]:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.dead_jobs(conn, limit)

    def replay_writebacks(self, patient_ids: Sequence[str] | None, now: datetime) -> list[str]:
        """See WritebackStore."""
        with self._transaction() as conn:
            return writeback.replay(conn, patient_ids, now)


def _read_text(conn: Conn, key: ResourceKey) -> StoredText | None:
    row = conn.execute(query("read_resource"), {"resource_type": key[0], "id": key[1]}).fetchone()
    return StoredText(row["body"], row["version_id"], row["last_updated_at"]) if row else None


def _fact_row(item: SourcedFact, now: datetime) -> tuple[Any, ...]:
    f = item.fact
    return (
        item.patient_id,
        f.kind.value,
        f.value_num,
        f.value_text,
        f.unit,
        f.effective_date,
        f.effective_at,
        f.end_date,
        f.status,
        _jsonb(dict(f.attrs)),
        item.source_type,
        item.source_id,
        item.source_version,
        now,
    )


def _write_params(write: ResourceWrite) -> dict[str, Any]:
    return {
        "resource_type": write.resource_type,
        "id": write.id,
        "version_id": write.version_id,
        "now": write.last_updated,
        "content_hash": write.content_hash,
        "patient_id": write.patient_id,
        "status": write.status,
        "entered_in_error": write.entered_in_error,
        "medication_ref": write.medication_ref,
        "body": _jsonb(write.body),
    }
