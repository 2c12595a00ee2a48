"""Ports the API reads from directly, beside those of the use cases: Tasks, patient access, calibrations, secrets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from service.domain.calibration import Calibration
from service.usecases.ports.calibration import CalibrationRecord, EvaluationRecord
from service.usecases.ports.resources import StoredText

__all__ = ["CalibrationReads", "FeedSecrets", "PatientAccess", "TaskReads"]


class TaskReads(Protocol):
    """The alerts' Tasks as stored, for EHRs that pull them (docs/integration-guide.md)."""

    def read_task(self, task_id: str) -> StoredText | None:
        """One Task as JSON text, or None."""
        ...

    def search_tasks(
        self, patient_id: str | None, statuses: Sequence[str] | None, task_id: str | None, limit: int
    ) -> list[str]:
        """Tasks as JSON text, newest change first."""
        ...


class PatientAccess(Protocol):
    """What patient scoping needs: patients' Organizations, alerts' patients, break-the-glass grants."""

    def organization_of(self, patient_id: str) -> str | None:
        """The patient's managingOrganization reference, or None."""
        ...

    def patient_of_alert(self, alert_id: str) -> str | None:
        """The alert's patient, or None for an unknown alert."""
        ...

    def live_grants(self, actor: str, now: datetime) -> list[str]:
        """The patients this actor broke the glass for, still in force."""
        ...

    def grant(self, actor: str, patient_id: str, reason: str, now: datetime, expires_at: datetime) -> None:
        """Record a break-the-glass grant."""
        ...


class CalibrationReads(Protocol):
    """The model's local recalibrations, as the model page shows them."""

    def active_calibration(self, base_version: str) -> Calibration | None:
        """The calibration in force for this model version, if any."""
        ...

    def calibrations(self, limit: int = 50) -> list[CalibrationRecord]:
        """Registered calibrations, newest first."""
        ...

    def latest_evaluation(self) -> EvaluationRecord | None:
        """The newest recalibration run."""
        ...


class FeedSecrets(Protocol):
    """The event feed's shared secrets, checked on every notification."""

    def accepted(self, feed_id: str, now: datetime) -> list[bytes] | None:
        """The hashes accepted now (the current one, and the previous one in its grace), or None: no secret set."""
        ...
