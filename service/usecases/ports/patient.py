"""The patient pipeline's transaction: assessment and alerts over one batch of patients."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from service.usecases.ports.alerts import AlertSession
from service.usecases.ports.assessment import AssessmentSession


class PatientSession(AssessmentSession, AlertSession, Protocol):
    """One transaction over a batch of patients for the whole pipeline: facts, assessment, alerts, care plan."""


class PatientStore(Protocol):
    """Transactions for the patient pipeline (usecases/patient_pipeline.py)."""

    def patient_session(self) -> AbstractContextManager[PatientSession]:
        """A transaction."""
