"""What the CDS Hooks services read and write, and the reads at the EHR with a hook's own authorisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.cds import PatientState


@dataclass(frozen=True, slots=True)
class CdsFeedback:
    """One feedback item (cds-hooks 2.0, 'Feedback'), as received."""

    service_id: str
    card: str
    outcome: str  # accepted | overridden
    accepted_suggestions: tuple[str, ...]
    override_system: str | None
    override_code: str | None
    override_comment: str | None
    outcome_at: datetime | None
    caller: str  # the EHR (iss) or the development token's subject
    received_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """A card refracture answered with, and what it was about (feedback names only the card's uuid)."""

    card: str
    service_id: str
    patient_id: str
    alert_id: str | None


class CdsStore(Protocol):
    """What the CDS services read and write."""

    def cds_patient_state(self, patient_id: str) -> PatientState:
        """The patient's latest assessment, active alerts and medication events (empty when unknown)."""

    def record_cds_feedback(self, items: Sequence[CdsFeedback]) -> list[tuple[str | None, str | None]]:
        """Keep feedback items, each linked to the patient and alert of its card when refracture issued it; the
        (patient, alert) of each item, in order."""

    def record_cds_cards(self, cards: Sequence[IssuedCard], now: datetime) -> None:
        """Remember the cards answered with (once per uuid)."""

    def claim_jti(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Remember a token id until it expires; False when it was seen before (a replay)."""


class HookFhir(Protocol):
    """Reads at the EHR's FHIR server with the hook's own authorisation (adapters/ehr/cds_fhir.py)."""

    def active_medications(self, fhir_server: str, access_token: str, patient_id: str) -> Any | None:
        """The patient's active MedicationRequests as a searchset Bundle, or None (not allowed, or failed)."""
