"""The in-memory database behind the fakes: one set of tables, and transactions over it.

A transaction works on a deep copy of the tables and puts it in place when its block ends without an exception, so
a failed block leaves nothing behind, as in PostgreSQL. Transactions run one at a time (the sweep runs batches on
threads): a lock stands in for PostgreSQL's row and advisory locks. Opening a second one in a thread that already
holds one raises: the use cases promise never to hold two pooled connections at once.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from service.domain.audit_record import AuditRecord
from service.domain.patient import Demographics
from service.fhir.jsonio import dumps
from service.platform.errors import ConcurrentWrite
from service.usecases.ports.alerts import AlertEventRow, CareSummary, StoredAlert, StoredTask
from service.usecases.ports.assessment import AssessmentRow
from service.usecases.ports.ingest import ResourceWrite, SourcedFact
from service.usecases.ports.resources import ResourceKey

__all__ = ["AssessmentRecord", "MemoryDatabase", "PlanRecord", "Tables", "WritebackJob", "jsonb", "unique_violation"]


def jsonb(value: Any) -> Any:
    """A value as it comes back from a jsonb column: plain JSON (dates as strings, no shared references)."""
    return json.loads(dumps(value))


def unique_violation(what: str) -> ConcurrentWrite:
    """What the adapters raise for a unique violation (translate_errors: SQLSTATE 23505)."""
    return ConcurrentWrite(f"23505: {what}")


@dataclass
class AssessmentRecord:
    """An ``assessment`` row: the row as inserted, and its delivery."""

    row: AssessmentRow
    ehr_id: str | None = None
    delivered_at: datetime | None = None


@dataclass
class PlanRecord:
    """A ``care_plan`` row (one per patient)."""

    patient_id: str
    id: str
    version: int
    content_hash: str
    resource: dict[str, Any]
    updated_at: datetime
    ehr_id: str | None = None
    ehr_version: str | None = None
    delivered_version: int | None = None


@dataclass
class WritebackJob:
    """A ``writeback`` outbox row (one per patient)."""

    patient_id: str
    wanted_seq: int
    next_attempt_at: datetime
    updated_at: datetime
    status: str = "pending"  # pending | delivering | delivered | dead
    sent_seq: int = 0
    attempts: int = 0
    lease_until: datetime | None = None
    first_failure_at: datetime | None = None
    last_error: str | None = None
    last_status: int | None = None
    last_answer: Any = None


@dataclass
class Tables:
    """Every table the fakes keep; tests read them directly."""

    # ingest (service/adapters/postgres/store.py)
    resources: dict[ResourceKey, ResourceWrite] = field(default_factory=dict)
    history: list[ResourceWrite] = field(default_factory=list)
    facts: dict[ResourceKey, list[SourcedFact]] = field(default_factory=dict)
    recorded: dict[ResourceKey, datetime] = field(default_factory=dict)  # fact.recorded_at, per source resource
    unrecognised: dict[tuple[str, str, str], int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)  # patient -> changes counted (the outbox row)
    claimed: set[str] = field(default_factory=set)  # outbox rows already rung in their transaction
    audit: list[AuditRecord] = field(default_factory=list)
    demographics: dict[str, Demographics] = field(default_factory=dict)
    # assessments (assessments.py)
    assessments: list[AssessmentRecord] = field(default_factory=list)
    risk_summaries: dict[str, tuple[str, float, datetime]] = field(default_factory=dict)  # band, probability, when
    # alerts, care plans and Tasks (alerts.py, tasks.py)
    alerts: dict[str, StoredAlert] = field(default_factory=dict)  # in insertion order, as a heap scan returns them
    dismiss_reasons: dict[str, str | None] = field(default_factory=dict)
    alert_events: list[AlertEventRow] = field(default_factory=list)
    schedules: dict[str, date | None] = field(default_factory=dict)
    care_plans: dict[str, PlanRecord] = field(default_factory=dict)  # by patient
    care_plan_history: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, StoredTask] = field(default_factory=dict)  # by alert id
    task_updated: dict[str, datetime] = field(default_factory=dict)
    care_summaries: dict[str, CareSummary] = field(default_factory=dict)
    # write-back (writeback.py)
    writebacks: dict[str, WritebackJob] = field(default_factory=dict)
    writeback_seq: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    ehr_state: dict[str, Any] | None = None


class MemoryDatabase:
    """The tables and the transaction rule; the fake stores share one."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._lock = threading.Lock()
        self._owner: int | None = None

    @contextmanager
    def transaction(self) -> Iterator[Tables]:
        """A read-write transaction: committed when the block ends without an exception."""
        with self._held():
            working = copy.deepcopy(self.tables)
            yield working
            self.tables = working

    @contextmanager
    def reading(self) -> Iterator[Tables]:
        """A read-only transaction (no copy: nothing is written)."""
        with self._held():
            yield self.tables

    @contextmanager
    def _held(self) -> Iterator[None]:
        if self._owner == threading.get_ident():
            raise RuntimeError("a second transaction while this thread holds one (two pooled connections at once)")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None
