"""What the alert use cases read and write: alerts, their history, care plans, Tasks, schedules."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Protocol

from service.domain.alert_lifecycle import Transition
from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.usecases.ports.resources import StoredText

ACTIVE_ALERT_STATUSES: Final = frozenset({"open", "acknowledged", "assigned", "snoozed"})


@dataclass(frozen=True, slots=True)
class CareSummary:
    """What the worklist shows of a patient's treatment: the last anti-osteoporosis dose and the index date."""

    patient_id: str
    last_dose_date: date | None
    last_dose_drug: str | None
    index_date: date | None


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

    def facts_for_assessment(self, patient_ids: Sequence[str], as_of: AsOf) -> dict[str, list[Fact]]:
        """The stored facts of each patient that the alert evaluation as of that moment needs (domain/latest_only.py:
        no unused series, eGFR from its latest day on)."""

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
