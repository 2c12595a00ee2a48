"""Ports: what the use cases need from storage, the queue and the clock, as Protocols."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Protocol

from service.domain.alert_lifecycle import Transition
from service.domain.facts import Fact
from service.domain.patient import Demographics
from service.usecases.audit import AuditRecord

Clock = Callable[[], datetime]
ResourceKey = tuple[str, str]  # (resource type, id)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What is stored for a resource now."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content_hash: bytes
    patient_id: str | None


@dataclass(frozen=True, slots=True)
class ResourceWrite:
    """A new version of a resource to store (``body`` already carries meta.versionId/lastUpdated)."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content_hash: bytes
    patient_id: str | None
    status: str | None
    entered_in_error: bool
    medication_ref: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SourcedFact:
    """A fact with the patient and the resource version it came from."""

    patient_id: str
    fact: Fact
    source_type: str
    source_id: str
    source_version: int


@dataclass(frozen=True, slots=True)
class StoredText:
    """A stored resource as JSON text, ready to send."""

    body: str
    version_id: int
    last_updated: datetime


@dataclass(frozen=True, slots=True)
class UnrecognisedCount:
    """How often a code was seen and not recognised."""

    resource_type: str
    system: str
    code: str
    display: str | None
    occurrences: int
    first_seen: datetime | None = None
    last_seen: datetime | None = None


class IngestSession(Protocol):
    """One database transaction of the ingest use case."""

    def current_versions(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, StoredVersion]:
        """The stored version of each key that exists, locked until the transaction ends."""

    def write_resources(self, inserts: Sequence[ResourceWrite], updates: Sequence[ResourceWrite]) -> None:
        """Store new resources and new versions (superseded versions go to history)."""

    def replace_facts(self, sources: Sequence[ResourceKey], facts: Sequence[SourcedFact], now: datetime) -> set[str]:
        """Drop the facts of these resources and add the new ones; returns the patients of the dropped facts.
        Resources stored for the first time have no facts to drop: callers leave them out of ``sources``."""

    def count_unrecognised(self, counts: Sequence[UnrecognisedCount], now: datetime) -> None:
        """Add to the counts of unrecognised codes."""

    def mark_patients_changed(self, patient_ids: Iterable[str], now: datetime, claimed: bool = False) -> None:
        """Record in the outbox that these patients' records changed; ``claimed``: their doorbell counts as rung
        (the caller rings it right after the commit, and releases the rows if it cannot)."""

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        """Audit rows written in this transaction: they commit, or roll back, with the write they record."""

    def upsert_demographics(self, rows: Sequence[Demographics], now: datetime) -> None:
        """Keep the worklist's patient summary in step with the Patient resources."""

    def medication(self, ref: str) -> dict[str, Any] | None:
        """A stored Medication by "Medication/id"."""

    def dependents_of_medication(self, ref: str) -> list[dict[str, Any]]:
        """Resources whose facts were drawn with this Medication, locked."""

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """A stored resource as JSON text."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an error inside undoes only its own writes."""


class Store(Protocol):
    """The database: transactions and reads."""

    def session(self, pipelined: bool = False) -> AbstractContextManager[IngestSession]:
        """A transaction, committed when the block ends without an error; ``pipelined``: statements whose results
        are not read are sent together with the next read or the commit (one round trip instead of one each), for
        small writes such as one resource."""

    def read_text(self, key: ResourceKey) -> StoredText | None:
        """A stored resource as JSON text, outside any transaction."""

    def unrecognised_codes(self, limit: int) -> list[UnrecognisedCount]:
        """The unrecognised codes seen most often."""


class ChangeOutbox(Protocol):
    """The patient-change outbox, for the relay and the workers."""

    def claim_to_publish(self, now: datetime, redeliver_after_s: float, limit: int) -> list[str]:
        """Mark due rows as published and return their patient ids (committed by the caller's block)."""

    def claim_given(self, patient_ids: Sequence[str], now: datetime) -> list[str]:
        """Mark these patients' rows as published unless already rung; return those marked."""

    def pending(self, patient_ids: Sequence[str]) -> dict[str, int]:
        """The change sequence number of each patient with work not done."""

    def mark_done(self, done: Mapping[str, int], now: datetime) -> None:
        """Record that the work up to these sequence numbers is done."""

    def release(self, patient_ids: Sequence[str]) -> None:
        """Hand rows claimed in a write's transaction back to the relay: their doorbell could not be rung."""

    def backlog(self) -> tuple[int, datetime | None]:
        """How many patients wait, and since when the oldest."""


class OutboxStore(Protocol):
    """Transactions over the outbox."""

    def outbox(self) -> AbstractContextManager[ChangeOutbox]:
        """A transaction over the outbox."""


@dataclass(frozen=True, slots=True)
class LatestAssessment:
    """What the patient's newest assessment was made from."""

    model_version: str
    inputs_hash: str
    sequence_no: int


@dataclass(frozen=True, slots=True)
class AssessmentRow:
    """An assessment to store: its numbers and factors (the RiskAssessment is rendered from ``result`` when read)."""

    id: str
    patient_id: str
    sequence_no: int
    model_version: str
    inputs_hash: str
    assessed_at: datetime
    index_date: date
    probability: float
    probability_low: float
    probability_high: float
    band: str
    result: dict[str, Any]


class AssessmentSession(Protocol):
    """One transaction of the assessment use case."""

    def lock_patients(self, patient_ids: Sequence[str]) -> None:
        """Hold these patients until the transaction ends (ids sorted by the caller)."""

    def facts_of(self, patient_ids: Sequence[str]) -> dict[str, list[Fact]]:
        """The stored facts of each patient, with their sources and recording times."""

    def coverage_of(self, patient_ids: Sequence[str]) -> dict[str, set[str]]:
        """The resource types each patient's record holds."""

    def latest_assessments(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessment]:
        """Each patient's newest assessment, if any."""

    def insert_assessments(self, rows: Sequence[AssessmentRow]) -> None:
        """Store new assessments."""

    def queue_writeback(self, patient_ids: Sequence[str], now: datetime) -> None:
        """Ask for these patients' newest state to be sent to the EHR (in this transaction)."""


class AssessmentStore(Protocol):
    """Transactions and reads for assessments."""

    def assessment_session(self) -> AbstractContextManager[AssessmentSession]:
        """A transaction."""

    def read_risk_assessment(self, assessment_id: str) -> StoredText | None:
        """One RiskAssessment as JSON text."""

    def risk_assessments_of(self, patient_id: str, limit: int) -> list[str]:
        """A patient's RiskAssessments as JSON text, newest first."""

    def patients_to_rescore(self, after: str, limit: int, part: int = 0, parts: int = 1) -> list[str]:
        """Patient ids with an augmentation on record, in order, after a keyset position; partition part of parts."""


@dataclass(frozen=True, slots=True)
class CareSummary:
    """What the worklist shows of a patient's treatment: the last anti-osteoporosis dose and the index date."""

    patient_id: str
    last_dose_date: date | None
    last_dose_drug: str | None
    index_date: date | None


ACTIVE_ALERT_STATUSES: Final = frozenset({"open", "acknowledged", "assigned", "snoozed"})


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as stored."""

    id: str
    patient_id: str
    code: str
    status: str
    priority: str
    due: date
    episode: str
    evidence: tuple[str, ...]
    detail: str
    opened_at: datetime
    closed_at: datetime | None = None
    snoozed_until: date | None = None
    assignee: str | None = None
    revision: int = 1

    @property
    def active(self) -> bool:
        """Open, acknowledged, assigned or snoozed."""
        return self.status in ACTIVE_ALERT_STATUSES


@dataclass(frozen=True, slots=True)
class LatestAssessmentView:
    """What the care plan needs of the latest assessment."""

    resource_id: str
    band: str
    inputs: dict[str, Any]
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredCarePlan:
    """The patient's current CarePlan."""

    id: str
    version: int
    content_hash: str
    resource: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredTask:
    """An alert's Task as stored: the current version and what the EHR has of it."""

    alert_id: str
    patient_id: str
    id: str
    version: int
    content_hash: str
    resource: dict[str, Any]
    ehr_id: str | None = None
    ehr_version: str | None = None
    delivered_version: int | None = None
    synced_ehr_version: str | None = None
    ehr_final_status: str | None = None


@dataclass(frozen=True, slots=True)
class AlertEventRow:
    """One change of an alert: who, what, when."""

    alert_id: str
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None = None


class AlertSession(Protocol):
    """One transaction of the alert use cases."""

    def lock_patients(self, patient_ids: Sequence[str]) -> None:
        """Hold these patients until the transaction ends (ids sorted by the caller)."""

    def facts_of(self, patient_ids: Sequence[str]) -> dict[str, list[Fact]]:
        """The stored facts of each patient."""

    def alerts_of(self, patient_ids: Sequence[str], closed_since: datetime) -> dict[str, list[StoredAlert]]:
        """Each patient's active alerts and those closed since a moment."""

    def dismissed_episodes(self, patient_ids: Sequence[str]) -> set[tuple[str, str, str]]:
        """(patient, code, episode) of every dismissed alert."""

    def insert_alerts(self, alerts: Sequence[StoredAlert]) -> None:
        """Store new open alerts."""

    def update_alert_finding(self, alert: StoredAlert, now: datetime) -> None:
        """Store an active alert's new due date, episode, evidence and detail."""

    def set_alert_status(self, alert_id: str, status: str, now: datetime) -> None:
        """Change an alert's status (closing it when resolved or dismissed)."""

    def add_alert_events(self, events: Sequence[AlertEventRow]) -> None:
        """Keep changes in the alert's history."""

    def set_schedules(self, schedules: Sequence[tuple[str, date | None]], now: datetime) -> None:
        """Record each patient's next check date for the sweep."""

    def latest_assessment_views(self, patient_ids: Sequence[str]) -> dict[str, LatestAssessmentView]:
        """Each patient's latest assessment, as the care plan sees it."""

    def care_plans(self, patient_ids: Sequence[str]) -> dict[str, StoredCarePlan]:
        """Each patient's current CarePlan."""

    def save_care_plans(self, plans: Sequence[tuple[str, StoredCarePlan]], now: datetime) -> None:
        """Store a new version of patients' CarePlans: (patient id, plan) pairs."""

    def tasks_of(self, patient_ids: Sequence[str]) -> dict[str, StoredTask]:
        """The alerts' Tasks of these patients, by alert id."""

    def save_tasks(self, tasks: Sequence[StoredTask], now: datetime) -> None:
        """Store a new version of alerts' Tasks (to be delivered)."""

    def patient_organizations(self, patient_ids: Sequence[str]) -> dict[str, str]:
        """Each patient's managingOrganization reference (patients without one are left out)."""

    def task_for_update(self, identifier: str) -> StoredTask | None:
        """The Task with this identifier value (= its id), locked until the transaction ends."""

    def mark_task_synced(
        self, alert_id: str, ehr_id: str | None, ehr_version: str | None, final_status: str | None
    ) -> None:
        """The EHR's version of the Task has been looked at (acted on, or seen to be our own write); a final
        status the EHR set is kept by the Task from then on."""

    def queue_writeback(self, patient_ids: Sequence[str], now: datetime) -> None:
        """Ask for these patients' newest state to be sent to the EHR (in this transaction)."""

    def update_care_summaries(self, rows: Sequence[CareSummary], now: datetime) -> None:
        """Keep the worklist's last dose and index date per patient."""

    def alert_for_update(self, alert_id: str) -> StoredAlert | None:
        """One alert, locked until the transaction ends."""

    def apply_alert_action(self, alert_id: str, transition: Transition, now: datetime) -> None:
        """Store a person's action on an alert."""

    def alert_history(self, alert_id: str) -> list[AlertEventRow]:
        """An alert's changes, oldest first."""


class AlertStore(Protocol):
    """Transactions and reads for alerts and care plans."""

    def alert_session(self) -> AbstractContextManager[AlertSession]:
        """A transaction."""

    def due_for_sweep(self, today: date, after: str, limit: int) -> list[str]:
        """Patients whose next check date has come, in id order after a keyset position."""

    def all_patients(self, after: str, limit: int) -> list[str]:
        """Every patient refracture has heard of, in id order after a keyset position."""

    def read_care_plan(self, plan_id: str) -> StoredText | None:
        """One CarePlan as JSON text."""

    def care_plan_of(self, patient_id: str) -> str | None:
        """A patient's CarePlan as JSON text."""


class PatientSession(AssessmentSession, AlertSession, Protocol):
    """One transaction over a batch of patients for the whole pipeline: facts, assessment, alerts, care plan."""


class PatientStore(Protocol):
    """Transactions for the patient pipeline (usecases/patient_pipeline.py)."""

    def patient_session(self) -> AbstractContextManager[PatientSession]:
        """A transaction."""


@dataclass(frozen=True, slots=True)
class ClaimedWriteback:
    """A write-back job this worker now holds (under a lease)."""

    patient_id: str
    seq: int  # the state to send: done when delivered
    attempts: int
    first_failure_at: datetime | None


@dataclass(frozen=True, slots=True)
class WritebackState:
    """What there is to send for a patient, and what the EHR already has."""

    assessment_id: str | None
    risk_assessment: dict[str, Any] | None
    assessment_delivered: bool
    last_delivered_ehr_id: str | None
    plan_id: str | None
    plan_version: int | None
    care_plan: dict[str, Any] | None
    plan_ehr_id: str | None
    plan_ehr_version: str | None
    plan_delivered_version: int | None
    tasks: tuple[StoredTask, ...] = ()  # Tasks with a version not yet delivered


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """What the EHR accepted: its ids and versions."""

    mode: str
    assessment_id: str | None = None
    ehr_assessment_id: str | None = None
    plan_version: int | None = None
    ehr_plan_id: str | None = None
    ehr_plan_version: str | None = None
    # (alert id, our version delivered, the EHR's id, the EHR's version) of each Task sent
    tasks: tuple[tuple[str, int, str | None, str | None], ...] = ()


class WritebackStore(Protocol):
    """The write-back outbox and the delivery records."""

    def claim_writebacks(
        self, now: datetime, lease_until: datetime, limit: int, patient_ids: Sequence[str] | None
    ) -> list[ClaimedWriteback]:
        """Take due jobs (and jobs whose lease ran out) for this worker."""

    def writeback_state(self, patient_id: str) -> WritebackState:
        """What there is to send for a patient."""

    def complete_writeback(self, job: ClaimedWriteback, record: DeliveryRecord, now: datetime) -> None:
        """Record a delivery: the EHR's ids and versions; the job is done unless a newer state came meanwhile."""

    def retry_writeback(
        self, patient_id: str, next_attempt_at: datetime, error: str, status: int | None, answer: Any, now: datetime
    ) -> None:
        """Schedule another try."""

    def dead_writeback(self, patient_id: str, error: str, status: int | None, answer: Any, now: datetime) -> None:
        """Give up until someone replays it, keeping the EHR's answer."""

    def release_writeback(self, patient_id: str, next_attempt_at: datetime, now: datetime) -> None:
        """Hand back a claimed job that was not attempted."""

    def set_task_ehr_version(self, alert_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        """The EHR's id and current version of a Task (read after a version conflict)."""

    def set_plan_ehr_version(self, patient_id: str, ehr_id: str | None, ehr_version: str | None) -> None:
        """The CarePlan's id and version at the EHR, as last read."""

    def save_ehr_state(self, base_url: str | None, mode: str, detail: str, now: datetime) -> None:
        """The write mode in use, for /readyz."""

    def read_ehr_state(self) -> dict[str, Any] | None:
        """The write mode in use."""

    def writeback_counts(self) -> dict[str, Any]:
        """Jobs per status and the oldest pending one."""

    def dead_writebacks(self, limit: int) -> list[dict[str, Any]]:
        """The dead-lettered jobs with the EHR's answers."""

    def replay_writebacks(self, patient_ids: Sequence[str] | None, now: datetime) -> list[str]:
        """Put dead jobs back in the queue (all, or these patients')."""


@dataclass(frozen=True, slots=True)
class EhrAnswer:
    """A successful answer from the EHR."""

    status: int
    headers: dict[str, str]
    body: Any
    # The body's bytes, for readers that must keep decimals exact (resources ingested from the EHR: "2.50" is not 2.5).
    raw: bytes | None = None


class EhrGateway(Protocol):
    """The EHR's FHIR API."""

    @property
    def base_url(self) -> str:
        """The EHR's FHIR base."""

    def metadata(self) -> Any:
        """The CapabilityStatement."""

    def close(self) -> None:
        """Release the connections."""

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> EhrAnswer:
        """One request; failures raise EhrTemporaryError, EhrRejected or EhrConflict (service.platform.errors)."""


class TaskQueue(Protocol):
    """The doorbell: sends tasks by name; may fail when the broker is down."""

    def send(self, task_name: str, args: Sequence[Any]) -> None:
        """Publish one task."""


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Metrics(Protocol):
    """Counters of what the use cases did (service/adapters/metrics.py). Labels are types, codes and modes from
    fixed sets, never patients: the port takes nothing else."""

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        """Resources created, updated, unchanged or refused."""

    def count_writeback(self, mode: str, outcome: str) -> None:
        """One write-back job delivered, retried or dead, in a write mode."""

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        """Alerts opened or resolved, per alert code (after their transaction committed)."""


class NoMetrics:
    """Counts nothing: for unit tests and for tools nobody scrapes."""

    def count_ingested(self, resource_type: str, outcome: str, n: int = 1) -> None:
        """See Metrics."""

    def count_writeback(self, mode: str, outcome: str) -> None:
        """See Metrics."""

    def count_alerts(self, transition: str, by_code: Mapping[str, int]) -> None:
        """See Metrics."""
