"""The write-back outbox and the delivery records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.usecases.ports.alerts import StoredTask


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
