"""The patient pipeline: a batch of patients' facts read once, then assessed, evaluated and their write-back queued.

One transaction per batch: the patients are locked, their facts read in one query, the risk assessed from them,
the alerts and the care plan evaluated from the same facts (and the assessment just stored), and the write-back
queued — all committed together. The worker runs it for changed patients and the sweep for due ones; the delivery
to the EHR (network) comes after the commit, as the change processor's next step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.latest_only import AsOf
from service.usecases.alerts import AlertEvaluator, EvaluationOutcome
from service.usecases.assess import Assessor, AssessOutcome
from service.usecases.ports.clock import Clock
from service.usecases.ports.patient import PatientStore

__all__ = ["PatientPipeline", "PipelineOutcome"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PipelineOutcome:
    """What one batch did: its assessments and its alert evaluation."""

    assessment: AssessOutcome
    alerts: EvaluationOutcome


class PatientPipeline:
    """Assess and evaluate patients from one read of their facts; safe to run twice and concurrently."""

    def __init__(self, store: PatientStore, assessor: Assessor, evaluator: AlertEvaluator, clock: Clock) -> None:
        self._store = store
        self._assessor = assessor
        self._evaluator = evaluator
        self._clock = clock

    def run(self, patient_ids: Sequence[str]) -> PipelineOutcome:
        """Assess these patients, then evaluate their alerts and care plans, in one transaction.

        Returns:
            The assessment's and the evaluation's outcomes.
        """
        ids = sorted(set(patient_ids))
        if not ids:
            return PipelineOutcome(AssessOutcome(), EvaluationOutcome())
        # Before the session: never two pooled connections held at once by one call.
        calibration = self._assessor.calibration()
        with self._store.patient_session() as session:
            session.lock_patients(ids)
            now = self._clock()
            # As of the assessment's moment and the alerts' day: a long lab series is read only as far as they use it.
            facts = session.facts_for_assessment(ids, AsOf.at(now, self._evaluator.today(now)))
            # Assessment first: the care plan points at the newest RiskAssessment, read back in this transaction.
            assessed = self._assessor.assess_in(session, ids, facts, now, calibration)
            evaluated = self._evaluator.evaluate_in(session, ids, facts, now)
        self._evaluator.count(evaluated)
        return PipelineOutcome(assessed, evaluated)

    def work(self, patient_ids: Sequence[str]) -> None:
        """The step the change processor runs for changed patients (the write-back's delivery follows it)."""
        outcome = self.run(patient_ids)
        a, e = outcome.assessment, outcome.alerts
        log.info(
            "assessed %d, unchanged %d, not applicable %d; alerts: %d opened, %d resolved, %d updated; %d care plans",
            a.assessed,
            a.unchanged,
            a.not_applicable,
            e.opened,
            e.resolved,
            e.updated,
            e.care_plans,
        )
