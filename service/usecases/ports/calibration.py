"""Registered calibrations, recalibration runs, and the facts the development dataset is built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from service.domain.calibration import Calibration
from service.domain.facts import Fact


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """A registered calibration, as stored."""

    calibration: Calibration
    parent_version: str
    fitted_at: datetime
    metrics: dict[str, Any]
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One recalibration run (registered or not), as stored."""

    evaluated_at: datetime
    current_version: str
    candidate_version: str | None
    registered: bool
    reason: str
    metrics: dict[str, Any]


class FactReader(Protocol):
    """The part of an assessment session the dataset needs."""

    def facts_of(self, patient_ids: Sequence[str]) -> Mapping[str, list[Fact]]:
        """Facts by patient id."""

    def coverage_of(self, patient_ids: Sequence[str]) -> Mapping[str, set[str]]:
        """Resource types by patient id."""


class CalibrationStore(Protocol):
    """Registered calibrations and evaluations, and the stored facts the dataset is built from."""

    def active_calibration(self, base_version: str) -> Calibration | None:
        """The newest registered, not retired calibration for this base model version."""

    def record_run(self, evaluation: EvaluationRecord, calibration: CalibrationRecord | None) -> None:
        """Store a run's evaluation and, when registered, its calibration (which becomes the active one), in one
        transaction."""

    def patients_with_augmentation(self, after: str, limit: int) -> list[str]:
        """Patient ids with an augmentation on record, in id order after a keyset position."""

    def patients_operated_by(self, day: date, after: str, limit: int) -> list[str]:
        """Patient ids with a completed augmentation dated on or before ``day``, in id order after a keyset position."""

    def fact_reader(self) -> AbstractContextManager[FactReader]:
        """A read transaction over the facts."""
