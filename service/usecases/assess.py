"""Assess patients: features as of now, the model, and a compact stored assessment — once per change."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from service.domain.assessment import Assessment, assess
from service.domain.calibration import Calibration
from service.domain.facts import Fact
from service.domain.latest_only import AsOf
from service.fhir.assessment_record import compact_result
from service.usecases.ports.assessment import AssessmentRow, AssessmentSession, AssessmentStore
from service.usecases.ports.clock import Clock

__all__ = ["AssessOutcome", "Assessor"]

log = logging.getLogger(__name__)

# Assessment ids are deterministic (conventions: no random ids): patient, model, inputs and how many came before.
_NAMESPACE: Final = uuid.UUID("5e0c6f2a-8a57-4c36-9d0e-7f3c2b1a9e41")


@dataclass(slots=True)
class AssessOutcome:
    """What one run did."""

    assessed: int = 0
    unchanged: int = 0
    not_applicable: int = 0


class Assessor:
    """Assesses patients in one transaction per call; safe to run twice and concurrently."""

    def __init__(
        self, store: AssessmentStore, clock: Clock, calibration: Callable[[], Calibration | None] | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        # The active local recalibration, read per call (one small query): a worker picks up a new registration
        # without a restart. None: the literature model as published.
        self._calibration = calibration

    def assess_patients(self, patient_ids: Sequence[str]) -> AssessOutcome:
        """Assess these patients now; an assessment is stored only when the inputs or the model changed.

        Args:
            patient_ids: EHR Patient ids (unknown ones are simply not applicable).

        Returns:
            How many were assessed, unchanged, or outside the model (no augmentation on record).
        """
        ids = sorted(set(patient_ids))
        if not ids:
            return AssessOutcome()
        # Before the session: never two pooled connections held at once by one call.
        calibration = self.calibration()
        with self._store.assessment_session() as session:
            session.lock_patients(ids)
            now = self._clock()
            return self.assess_in(session, ids, session.facts_for_assessment(ids, AsOf.at(now)), now, calibration)

    def calibration(self) -> Calibration | None:
        """The active local recalibration (one small query; read outside any session), None for the literature
        model."""
        return self._calibration() if self._calibration is not None else None

    def assess_in(
        self,
        session: AssessmentSession,
        ids: Sequence[str],
        facts: Mapping[str, Sequence[Fact]],
        now: datetime,
        calibration: Calibration | None,
    ) -> AssessOutcome:
        """Assess locked patients inside the caller's transaction, from facts the caller has read.

        Args:
            session: the open transaction, the patients locked in it.
            ids: the patients, sorted and distinct.
            facts: their facts (read once by the caller, shared with the alert evaluation: patient_pipeline.py).
            now: the assessment moment.
            calibration: the active recalibration (``calibration()``), None for the literature model.
        """
        outcome = AssessOutcome()
        coverage = session.coverage_of(ids)
        latest = session.latest_assessments(ids)
        rows: list[AssessmentRow] = []
        for patient_id in ids:
            result = assess(patient_id, facts.get(patient_id, []), coverage.get(patient_id, set()), now, calibration)
            if result is None:
                outcome.not_applicable += 1
                continue
            previous = latest.get(patient_id)
            if previous is not None and (previous.model_version, previous.inputs_hash) == (
                result.model_version,
                result.inputs_hash,
            ):
                outcome.unchanged += 1
                continue
            sequence_no = previous.sequence_no + 1 if previous else 1
            rows.append(_row(result, sequence_no))
            outcome.assessed += 1
        session.insert_assessments(rows)
        # In the same transaction: a new assessment is never lost on its way to the EHR.
        session.queue_writeback([row.patient_id for row in rows], now)
        return outcome

    def rescore(
        self, patient_ids: Sequence[str] | None = None, batch_size: int = 1000, part: int = 0, parts: int = 1
    ) -> AssessOutcome:
        """Re-assess patients after a model change: these ones, or every patient with an augmentation on record.

        Each batch is one transaction; an interrupted run loses at most one batch and can simply be run again
        (unchanged patients are skipped). ``part`` of ``parts`` lets several processes share the work.

        Returns:
            The totals over all batches.
        """
        total = AssessOutcome()
        batches: list[Sequence[str]] = []
        if patient_ids is not None:
            batches = [patient_ids[i : i + batch_size] for i in range(0, len(patient_ids), batch_size)]
        after = ""
        while True:
            if patient_ids is None:
                batch: Sequence[str] = self._store.patients_to_rescore(after, batch_size, part, parts)
            else:
                batch = batches.pop(0) if batches else []
            if not batch:
                return total
            outcome = self.assess_patients(batch)
            total.assessed += outcome.assessed
            total.unchanged += outcome.unchanged
            total.not_applicable += outcome.not_applicable
            after = max(batch)

    def work(self, patient_ids: Sequence[str]) -> None:
        """The step the change processor runs for changed patients."""
        outcome = self.assess_patients(patient_ids)
        log.info(
            "assessed %d, unchanged %d, not applicable %d", outcome.assessed, outcome.unchanged, outcome.not_applicable
        )


def _row(result: Assessment, sequence_no: int) -> AssessmentRow:
    assessment_id = str(
        uuid.uuid5(_NAMESPACE, f"{result.patient_id}|{result.model_version}|{result.inputs_hash}|{sequence_no}")
    )
    estimate = result.estimate
    index = result.features.index
    assert index is not None
    return AssessmentRow(
        id=assessment_id,
        patient_id=result.patient_id,
        sequence_no=sequence_no,
        model_version=result.model_version,
        inputs_hash=result.inputs_hash,
        assessed_at=result.assessed_at,
        index_date=index.day,
        probability=estimate.probability,
        probability_low=estimate.low,
        probability_high=estimate.high,
        band=estimate.band,
        # The numbers and factors only: the RiskAssessment is rendered from them when read or delivered.
        result=compact_result(result),
    )
