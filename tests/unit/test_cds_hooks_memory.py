"""CdsHooks over the in-memory CdsStore and HookFhir: cards from stored state, each remembered once so feedback
links to its patient and alert, no read for orders refracture does not know, the EHR read only when the prefetch
lacks the medications, and replayed token ids refused (the SQL itself: tests/integration/test_cds_hooks.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.domain.alert_types import AlertType
from service.domain.cds import CdsAlert, PatientState
from service.fhir.cds_hooks import ORDER_SIGN, PATIENT_VIEW
from service.usecases.cds_hooks import CdsHooks, HookCall
from service.usecases.ports.cds import CdsFeedback
from tests.support.clock import ManualClock
from tests.support.fakes import FakeHookFhir, MemoryCdsStore

NOW = datetime(2026, 5, 4, 9, tzinfo=UTC)
PAGE = "https://refracture.test/worklist/patients/p1"
OVERDUE = CdsAlert(
    "6f1c1e7e-0000-4000-8000-000000000001",
    AlertType.DENOSUMAB_OVERDUE,
    "open",
    "urgent",
    date(2026, 4, 1),
    "Denosumab dose overdue",
)


def hooks(store: MemoryCdsStore, fhir: FakeHookFhir | None = None) -> CdsHooks:
    clock = ManualClock(NOW)
    return CdsHooks(store, clock, lambda moment: moment.date(), fhir=fhir)


def feedback(card: str) -> CdsFeedback:
    return CdsFeedback(PATIENT_VIEW, card, "accepted", (), None, None, None, NOW, "https://ehr.test", NOW)


def denosumab_draft() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "d1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/p1"},
                    "medicationCodeableConcept": {"text": "Prolia (denosumab) 60 mg/mL"},
                }
            }
        ],
    }


def test_patient_view_cards_are_remembered_once_and_feedback_links_to_the_alert() -> None:
    store = MemoryCdsStore()
    store.states["p1"] = PatientState("p1", None, (OVERDUE,), ())
    cds = hooks(store)
    cards = cds.cards(HookCall(PATIENT_VIEW, "p1"), PAGE)
    assert cards
    uuids = [str(c["uuid"]) for c in cards]
    assert {store.cards[u].alert_id for u in uuids} == {OVERDUE.id}
    first = dict(store.first_issued)
    assert cds.cards(HookCall(PATIENT_VIEW, "p1"), PAGE) == cards  # the same uuids again: kept once
    assert store.first_issued == first
    assert cds.feedback([feedback(uuids[0]), feedback("not-ours")]) == [("p1", OVERDUE.id), (None, None)]
    assert len(store.feedback) == 2
    assert cds.feedback([]) == []


def test_an_unknown_patient_gets_no_cards_and_nothing_is_remembered() -> None:
    store = MemoryCdsStore()
    assert hooks(store).cards(HookCall(PATIENT_VIEW, "nobody"), PAGE) == []
    assert store.cards == {}


def test_an_order_of_no_drug_refracture_knows_reads_nothing() -> None:
    store = MemoryCdsStore()
    fhir = FakeHookFhir()
    other = denosumab_draft()
    other["entry"][0]["resource"]["medicationCodeableConcept"] = {"text": "Paracetamol 500 mg"}
    call = HookCall(ORDER_SIGN, "p1", draft_orders=other, fhir_server=fhir.server, fhir_token=fhir.token)
    assert hooks(store, fhir).cards(call, PAGE) == []
    assert store.state_reads == []
    assert fhir.reads == []


def test_the_ehr_is_read_only_when_the_prefetch_lacks_the_medications() -> None:
    store = MemoryCdsStore()
    fhir = FakeHookFhir({"resourceType": "Bundle", "type": "searchset", "entry": []})
    cds = hooks(store, fhir)
    call = HookCall(ORDER_SIGN, "p1", draft_orders=denosumab_draft(), fhir_server=fhir.server, fhir_token=fhir.token)
    cds.cards(call, PAGE)
    assert store.state_reads == ["p1"]
    assert fhir.reads == [(fhir.server, fhir.token, "p1")]
    prefetched = HookCall(
        ORDER_SIGN,
        "p1",
        draft_orders=denosumab_draft(),
        prefetch={"medications": {"resourceType": "Bundle", "type": "searchset", "entry": []}},
        fhir_server=fhir.server,
        fhir_token=fhir.token,
    )
    cds.cards(prefetched, PAGE)
    without_token = HookCall(ORDER_SIGN, "p1", draft_orders=denosumab_draft(), fhir_server=fhir.server)
    cds.cards(without_token, PAGE)
    assert len(fhir.reads) == 1


def test_a_replayed_token_id_is_refused_until_it_expires() -> None:
    store = MemoryCdsStore()
    cds = hooks(store)
    expires = NOW + timedelta(minutes=5)
    assert cds.claim_jti("https://ehr.test", "j1", expires, NOW)
    assert not cds.claim_jti("https://ehr.test", "j1", expires, NOW + timedelta(minutes=1))
    assert cds.claim_jti("https://other.test", "j1", expires, NOW)  # per issuer
    later = expires + timedelta(seconds=1)
    assert cds.claim_jti("https://ehr.test", "j1", later + timedelta(minutes=5), later)
