"""What the assessment use case reads and writes: facts, coverage, assessments."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.usecases.ports.resources import StoredText


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

    def facts_for_assessment(self, patient_ids: Sequence[str], as_of: AsOf) -> dict[str, list[Fact]]:
        """The stored facts of each patient, with their sources and recording times, that the assessment and the alert
        evaluation as of that moment need (domain/latest_only.py: no unused series, eGFR from its latest day on)."""

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
