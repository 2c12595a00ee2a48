"""In-memory CdsStore and HookFhir: what the CDS Hooks SQL (adapters/postgres/cds.sql) does that CdsHooks relies
on: a card remembered once per uuid (the first issue wins), feedback linked to its card's patient and alert, token
ids claimed once while unexpired; and the EHR's MedicationRequest read with the hook's token."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.domain.cds import PatientState
from service.usecases.ports.cds import CdsFeedback, CdsStore, HookFhir, IssuedCard

__all__ = ["FakeHookFhir", "MemoryCdsStore"]


class MemoryCdsStore:
    """Patient states put in by the test; the cards, feedback and token ids kept as the SQL keeps them."""

    def __init__(self) -> None:
        self.states: dict[str, PatientState] = {}
        self.cards: dict[str, IssuedCard] = {}
        self.first_issued: dict[str, datetime] = {}
        self.feedback: list[tuple[CdsFeedback, str | None, str | None]] = []
        self.jtis: dict[tuple[str, str], datetime] = {}
        self.state_reads: list[str] = []

    def cds_patient_state(self, patient_id: str) -> PatientState:
        """See CdsStore."""
        self.state_reads.append(patient_id)
        return self.states.get(patient_id, PatientState(patient_id, None, (), ()))

    def record_cds_feedback(self, items: Sequence[CdsFeedback]) -> list[tuple[str | None, str | None]]:
        """See CdsStore."""
        out: list[tuple[str | None, str | None]] = []
        for item in items:
            card = self.cards.get(item.card)
            linked = (card.patient_id, card.alert_id) if card else (None, None)
            self.feedback.append((item, *linked))
            out.append(linked)
        return out

    def record_cds_cards(self, cards: Sequence[IssuedCard], now: datetime) -> None:
        """See CdsStore."""
        for card in cards:
            if card.card not in self.cards:  # ON CONFLICT (card) DO NOTHING
                self.cards[card.card] = card
                self.first_issued[card.card] = now

    def claim_jti(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """See CdsStore."""
        self.jtis = {k: v for k, v in self.jtis.items() if not v < now}
        if (issuer, jti) in self.jtis:
            return False
        self.jtis[(issuer, jti)] = expires_at
        return True


class FakeHookFhir:
    """The EHR's active MedicationRequests for a server and token; records each read."""

    def __init__(self, bundle: Any | None = None, server: str = "https://ehr.test/fhir", token: str = "t0k") -> None:
        self.bundle = bundle
        self.server = server
        self.token = token
        self.reads: list[tuple[str, str, str]] = []

    def active_medications(self, fhir_server: str, access_token: str, patient_id: str) -> Any | None:
        """See HookFhir: None when the server or token is not the one set (not allowed)."""
        self.reads.append((fhir_server, access_token, patient_id))
        if fhir_server != self.server or access_token != self.token:
            return None
        return self.bundle


_STORE: type[CdsStore] = MemoryCdsStore
_FHIR: type[HookFhir] = FakeHookFhir
