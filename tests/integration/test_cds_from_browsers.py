"""CDS Hooks from browser sandboxes (issue 18, item 4): CORS for the configured origins, fhirServer +
fhirAuthorization at an allow-listed FHIR server (the SMART launcher stand-in's FHIR base), and card feedback
linked to the patient and the alert."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.integration.test_cds_hooks import DENOSUMAB, ZOLEDRONIC, bearer, cds_app, drafts, hook, token
from tests.smart_launcher_standin import RunningLauncher
from tests.support.databases import query_one

pytestmark = pytest.mark.integration

SANDBOX = "https://sandbox.cds-hooks.org"
PATIENT_VIEW = "refracture-patient-view"
ORDER_SIGN = "refracture-order-sign"


@pytest.fixture
def app(services: LocalServices, worklist_url: str, launcher: RunningLauncher) -> Iterator[tuple[Parts, TestClient]]:
    with cds_app(services, worklist_url, cds_cors_origins=[SANDBOX], cds_fhir_servers=[launcher.fhir]) as running:
        yield running


def preflight(
    client: TestClient, path: str, origin: str, headers: str = "authorization,content-type"
) -> httpx.Response:
    return client.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers},
    )


# --- CORS ------------------------------------------------------------------------------------------------------
def test_a_preflight_from_an_allowed_origin_is_answered(app: tuple[Parts, TestClient]) -> None:
    _, client = app
    for path in ("/cds-services", f"/cds-services/{PATIENT_VIEW}", f"/cds-services/{PATIENT_VIEW}/feedback"):
        answer = preflight(client, path, SANDBOX)
        assert answer.status_code == 204, (path, answer.text)
        assert answer.headers["access-control-allow-origin"] == SANDBOX
        assert {"Authorization", "Content-Type"} <= {
            h.strip() for h in answer.headers["access-control-allow-headers"].split(",")
        }
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in answer.headers  # bearer JWTs only, never cookies
        assert "Origin" in answer.headers["vary"]


def test_a_preflight_from_another_origin_is_refused(app: tuple[Parts, TestClient]) -> None:
    _, client = app
    refused = preflight(client, f"/cds-services/{PATIENT_VIEW}", "https://evil.example.org")
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert refused.json()["resourceType"] == "OperationOutcome"
    # An allowed origin asking for a header the services do not take is refused too.
    odd = preflight(client, f"/cds-services/{PATIENT_VIEW}", SANDBOX, "authorization,x-forwarded-host")
    assert odd.status_code == 403


def test_calls_from_an_allowed_origin_carry_the_cors_headers(app: tuple[Parts, TestClient]) -> None:
    _, client = app
    discovery = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert discovery.headers["access-control-allow-origin"] == SANDBOX
    call = client.post(
        f"/cds-services/{PATIENT_VIEW}",
        json={"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "edge-percent"}},
        headers={"Origin": SANDBOX, **bearer(token(PATIENT_VIEW))},
    )
    assert call.status_code == 200
    assert call.headers["access-control-allow-origin"] == SANDBOX
    # Another origin gets the answer without them (the browser hides it from that page); other paths never get them.
    other = client.get("/cds-services", headers={"Origin": "https://evil.example.org"})
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in client.get("/fhir/metadata", headers={"Origin": SANDBOX}).headers
    assert preflight(client, "/api/worklist", SANDBOX).status_code != 204


def test_no_origin_is_allowed_by_default_and_star_allows_any(services: LocalServices, database_url: str) -> None:
    with cds_app(services, database_url) as (_, client):
        assert preflight(client, "/cds-services", SANDBOX).status_code == 403
        assert "access-control-allow-origin" not in client.get("/cds-services", headers={"Origin": SANDBOX}).headers
    with cds_app(services, database_url, cds_cors_origins=["*"]) as (_, client):
        answer = preflight(client, "/cds-services", "https://any.example.org")
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"


# --- fhirServer and fhirAuthorization ----------------------------------------------------------------------------
def order_sign(
    client: TestClient, fhir_server: str | None, access_token: str | None, prefetch: dict[str, Any] | None = None
) -> httpx.Response:
    body: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": "edge-percent", "draftOrders": drafts(DENOSUMAB)},
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if access_token is not None:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/MedicationRequest.read",
            "subject": "refracture",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return client.post(f"/cds-services/{ORDER_SIGN}", json=body, headers=bearer(token(ORDER_SIGN)))


def _follow_on_at_the_ehr(launcher: RunningLauncher) -> str:
    planned = {
        "resourceType": "MedicationRequest",
        "id": "zol-1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/edge-percent"},
        **ZOLEDRONIC,
    }
    launcher.ehr.medications = [planned]
    access = "hook-token-" + uuid.uuid4().hex
    launcher.ehr.access_tokens.add(access)
    return access


def test_what_the_prefetch_lacks_is_read_at_the_allow_listed_fhir_server(
    app: tuple[Parts, TestClient], launcher: RunningLauncher
) -> None:
    _, client = app
    access = _follow_on_at_the_ehr(launcher)
    # Without the EHR's own record of the planned zoledronic acid: the warning.
    assert [c["indicator"] for c in order_sign(client, None, None).json()["cards"]] == ["warning"]
    assert not launcher.ehr.fhir_requests
    # With fhirServer and fhirAuthorization, refracture reads the active orders there and finds the follow-on.
    answer = order_sign(client, launcher.fhir, access)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cards": []}
    [asked] = launcher.ehr.fhir_requests
    assert asked["authorization"] == f"Bearer {access}"
    assert asked["patient"] == "edge-percent"
    assert asked["status"] == "active"
    # A prefetch that has the medications is used as it is: no read.
    empty = {"medications": {"resourceType": "Bundle", "type": "searchset", "entry": []}}
    assert [c["indicator"] for c in order_sign(client, launcher.fhir, access, empty).json()["cards"]] == ["warning"]
    assert len(launcher.ehr.fhir_requests) == 1


def test_a_fhir_server_off_the_allow_list_never_gets_the_token(
    app: tuple[Parts, TestClient], launcher: RunningLauncher, worklist_url: str
) -> None:
    _, client = app
    access = _follow_on_at_the_ehr(launcher)
    for server in (f"{launcher.base}/other-fhir", "http://169.254.169.254/fhir", f"{launcher.fhir}.evil.example.org"):
        answer = order_sign(client, server, access)
        assert answer.status_code == 200
        assert [c["indicator"] for c in answer.json()["cards"]] == ["warning"]
    assert not launcher.ehr.fhir_requests
    detail = query_one(
        worklist_url, "SELECT detail FROM audit_event WHERE action = 'cds-hook' ORDER BY id DESC LIMIT 1"
    )
    assert "not allow-listed" in detail
    # A token the EHR does not know (expired, say) is a failed read: the answer is the stored state's.
    assert [c["indicator"] for c in order_sign(client, launcher.fhir, "stale").json()["cards"]] == ["warning"]


# --- feedback linked to the patient and the alert ------------------------------------------------------------
def test_feedback_is_linked_to_the_patient_and_the_alert_of_its_card(
    app: tuple[Parts, TestClient], worklist_url: str
) -> None:
    _, client = app
    cards = hook(client, PATIENT_VIEW, "edge-percent").json()["cards"]
    alert_card = cards[0]
    assert alert_card["source"]["topic"]["code"] == "denosumab-overdue"
    risk_card = cards[-1]
    unknown = str(uuid.uuid4())
    body = {
        "feedback": [
            {"card": alert_card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": "x"}]},
            {"card": risk_card["uuid"], "outcome": "overridden"},
            {"card": unknown, "outcome": "overridden"},
        ]
    }
    answer = client.post(f"/cds-services/{PATIENT_VIEW}/feedback", json=body, headers=bearer(token(PATIENT_VIEW)))
    assert answer.status_code == 200, answer.text
    alert_id = query_one(
        worklist_url,
        "SELECT id::text FROM alert WHERE patient_id = 'edge-percent' AND code = 'denosumab-overdue' "
        "AND status IN ('open', 'acknowledged', 'assigned')",
    )
    with psycopg.connect(worklist_url) as conn:
        rows = conn.execute("SELECT card, patient_id, alert_id::text FROM cds_feedback ORDER BY id").fetchall()
    assert rows == [
        (alert_card["uuid"], "edge-percent", alert_id),
        (risk_card["uuid"], "edge-percent", None),
        (unknown, None, None),
    ]
    audited = query_one(
        worklist_url, "SELECT count(*) FROM audit_event WHERE action = 'cds-feedback' AND patient_id = 'edge-percent'"
    )
    assert audited == 1
    # Issuing the same cards again links nothing twice.
    hook(client, PATIENT_VIEW, "edge-percent")
    assert query_one(worklist_url, "SELECT count(*) FROM cds_card WHERE card = %s", alert_card["uuid"]) == 1
