"""CDS Hooks: answer patient-view and the order hooks from stored state, record feedback, refuse replayed tokens.

Nothing here calls the EHR: the answer is built from what refracture has stored (one read of the patient's state),
and the EHR's prefetch is only an extra source for a follow-on drug ordered elsewhere (cds-hooks 2.0 asks for
answers "on the order of 500 ms").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from service.domain.cds import PatientState, review_orders
from service.fhir.cds_hooks import ORDER_SELECT, PATIENT_VIEW, SERVICES, draft_drugs, prefetched_drugs
from service.fhir.cds_hooks_cards import CardContext, card_uuid, order_cards, patient_view_cards
from service.fhir.medications import LocalTarget
from service.usecases.ports.cds import CdsFeedback, CdsStore, HookFhir, IssuedCard
from service.usecases.ports.clock import Clock

__all__ = ["CdsHooks", "HookCall"]


@dataclass(frozen=True, slots=True)
class HookCall:
    """A hook request, parsed."""

    service_id: str
    patient_id: str
    draft_orders: Any = None
    selections: tuple[str, ...] | None = None
    prefetch: Any = None
    fhir_server: str | None = None  # the call's fhirServer, when allow-listed
    fhir_token: str | None = None  # the call's fhirAuthorization.access_token, for that server only


class CdsHooks:
    """The CDS services."""

    def __init__(
        self,
        store: CdsStore,
        clock: Clock,
        today: Callable[[datetime], date],
        local_target: LocalTarget | None = None,
        fhir: HookFhir | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._today = today
        self._local_target = local_target
        self._fhir = fhir

    def cards(self, call: HookCall, page_url: str | None) -> list[dict[str, Any]]:
        """The cards for one hook call.

        Args:
            call: the parsed request (service, patient, draft orders, prefetch).
            page_url: the absolute URL of refracture's page for the patient, for links.

        Raises:
            KeyError: the service is not one of refracture's (a programming error: the route checks it first).
        """
        service = SERVICES[call.service_id]
        ctx = CardContext(service.id, call.patient_id, page_url, self._today(self._clock()))
        if service.id == PATIENT_VIEW:
            state = self._store.cds_patient_state(call.patient_id)
            return self._issued(patient_view_cards(state, ctx), call, state)
        selections = call.selections if service.id == ORDER_SELECT else None
        drafts = draft_drugs(call.draft_orders, selections, self._local_target)
        if not any(d.triggering for d in drafts):
            return []  # no drug refracture knows: no read at all
        state = self._store.cds_patient_state(call.patient_id)
        prefetched = prefetched_drugs(self._prefetch(call), self._local_target)
        finding = review_orders(drafts, state, self._today(self._clock()), prefetched)
        return self._issued(order_cards(finding, ctx), call, state)

    def _prefetch(self, call: HookCall) -> Any:
        """The prefetch, with the active MedicationRequests read from the EHR when the prefetch lacks them and the
        call handed over an allow-listed fhirServer and its token."""
        prefetch = call.prefetch
        if isinstance(prefetch, dict) and prefetch.get("medications") is not None:
            return prefetch
        if self._fhir is None or not call.fhir_server or not call.fhir_token:
            return prefetch
        fetched = self._fhir.active_medications(call.fhir_server, call.fhir_token, call.patient_id)
        if fetched is None:
            return prefetch
        return {**(prefetch if isinstance(prefetch, dict) else {}), "medications": fetched}

    def _issued(self, cards: list[dict[str, Any]], call: HookCall, state: PatientState) -> list[dict[str, Any]]:
        """Remember what each card was about, so that its feedback can be linked to the patient and the alert."""
        if cards:
            by_uuid = {card_uuid(call.service_id, call.patient_id, f"alert|{a.id}"): a.id for a in state.alerts}
            issued = [
                IssuedCard(str(c["uuid"]), call.service_id, call.patient_id, by_uuid.get(str(c["uuid"]))) for c in cards
            ]
            self._store.record_cds_cards(issued, self._clock())
        return cards

    def feedback(self, items: Sequence[CdsFeedback]) -> list[tuple[str | None, str | None]]:
        """Record what the clinician did with the cards; the (patient, alert) each item was linked to."""
        return self._store.record_cds_feedback(items) if items else []

    def claim_jti(self, issuer: str, jti: str, expires_at: datetime, now: datetime) -> bool:
        """Whether a token id is new (and remember it until it expires); ``now`` is the verifier's clock, the one
        the token's expiry was checked against."""
        return self._store.claim_jti(issuer, jti, expires_at, now)
