"""CDS Hooks over HTTP: discovery, patient-view and the order hooks from a loaded database, the EHR's JWT, feedback."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.security.cds_trust import make_cds_verifier
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.unit.test_cds_cards import check_card
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration

ISS = "https://ehr.example.org"
BASE = "https://refracture.test"
JKU = f"{ISS}/jku-keys"
KEY = RSAKey.generate_key(2048, parameters={"kid": "ehr-1"}, private=True)
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "ehr-1"}, private=True)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DENOSUMAB = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "993452"}]}}
ZOLEDRONIC = {"medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "705824"}]}}
PARACETAMOL = {"medicationCodeableConcept": {"text": "paracetamol 500 mg tablet"}}


def _jwks(request: httpx.Request) -> httpx.Response:
    if request.url.path in ("/jwks", "/jku-keys"):
        return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
    return httpx.Response(404)


def token(service: str = "refracture-patient-view", header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISS,
        "aud": f"{BASE}/cds-services/{service}",
        "sub": "ehr-client",
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    key = body.pop("_key", KEY)
    return jwt.encode(
        {"alg": "RS384", "typ": "JWT", "kid": "ehr-1", **(header or {})},
        {k: v for k, v in body.items() if v is not None},
        key,
        algorithms=["RS384"],
    )


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@contextmanager
def cds_app(services: LocalServices, url: str, **overrides: Any) -> Iterator[tuple[Parts, TestClient]]:
    settings = make_settings(
        services,
        url,
        cds_base_url=BASE,
        cds_issuers={ISS: {"jwks_url": f"{ISS}/jwks", "jku": [JKU]}},
        cds_algorithms=["RS384", "ES384"],
        **overrides,
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    parts.cds_verifier.close()
    parts.cds_verifier = make_cds_verifier(
        settings, parts.cds_hooks.claim_jti, httpx.Client(transport=httpx.MockTransport(_jwks))
    )
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False) as client:
            yield parts, client
    finally:
        parts.close()


@pytest.fixture
def loaded(services: LocalServices, worklist_url: str) -> Iterator[tuple[Parts, TestClient]]:
    with cds_app(services, worklist_url) as app:
        yield app


@pytest.fixture
def empty(services: LocalServices, database_url: str) -> Iterator[tuple[Parts, TestClient]]:
    with cds_app(services, database_url) as app:
        yield app


def hook(
    client: TestClient,
    service: str,
    patient: str,
    context: dict[str, Any] | None = None,
    prefetch: dict[str, Any] | None = None,
    auth: dict[str, str] | None = None,
) -> httpx.Response:
    hook_name = service.removeprefix("refracture-")
    body: dict[str, Any] = {
        "hook": hook_name,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": ISS + "/fhir",
        "context": {"userId": "Practitioner/dr-1", "patientId": patient, **(context or {})},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return client.post(f"/cds-services/{service}", json=body, headers=auth or bearer(token(service)))


def drafts(*medications: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": f"draft-{n}",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/edge-percent"},
                    **medication,
                }
            }
            for n, medication in enumerate(medications)
        ],
    }


def test_discovery_is_public_and_lists_the_services(empty: tuple[Parts, TestClient]) -> None:
    _, client = empty
    answer = client.get("/cds-services")
    assert answer.status_code == 200
    services = {s["id"]: s for s in answer.json()["services"]}
    assert set(services) == {"refracture-patient-view", "refracture-order-select", "refracture-order-sign"}
    assert all(s["prefetch"]["patient"] == "Patient/{{context.patientId}}" for s in services.values())


def test_patient_view_answers_from_stored_state_with_or_without_prefetch(
    loaded: tuple[Parts, TestClient], worklist_url: str
) -> None:
    _, client = loaded
    plain = hook(client, "refracture-patient-view", "edge-percent")
    assert plain.status_code == 200, plain.text
    cards = plain.json()["cards"]
    for card in cards:
        check_card(card)
    # Denosumab 60 mg 240 days ago, no follow-on: the overdue alert is critical and suggests the orders.
    assert cards[0]["indicator"] == "critical"
    assert cards[0]["source"]["topic"]["code"] == "denosumab-overdue"
    assert cards[0]["source"]["url"] == f"{BASE}/worklist/patients/edge-percent"
    assert cards[-1]["summary"].startswith("Re-fracture risk")
    prefetch = {"patient": {"resourceType": "Patient", "id": "edge-percent", "gender": "male"}}
    with_prefetch = hook(client, "refracture-patient-view", "edge-percent", prefetch=prefetch)
    assert with_prefetch.json() == plain.json()
    audited = query_one(
        worklist_url, "SELECT count(*) FROM audit_event WHERE patient_id = 'edge-percent' AND action = 'cds-hook'"
    )
    assert audited == 2


def test_order_sign_warns_about_denosumab_without_a_follow_on(loaded: tuple[Parts, TestClient]) -> None:
    _, client = loaded
    sign = "refracture-order-sign"
    answer = hook(client, sign, "edge-percent", {"draftOrders": drafts(DENOSUMAB, PARACETAMOL)})
    assert answer.status_code == 200, answer.text
    [card] = answer.json()["cards"]
    check_card(card)
    assert card["indicator"] == "warning"
    assert "follow-on" in card["summary"]
    # The follow-on in the same orders, or among the EHR's prefetched active orders, settles it.
    assert hook(client, sign, "edge-percent", {"draftOrders": drafts(DENOSUMAB, ZOLEDRONIC)}).json() == {"cards": []}
    active = {"resourceType": "Bundle", "type": "searchset", "entry": drafts(ZOLEDRONIC)["entry"]}
    active["entry"][0]["resource"]["status"] = "active"
    prefetched = hook(client, sign, "edge-percent", {"draftOrders": drafts(DENOSUMAB)}, {"medications": active})
    assert prefetched.json() == {"cards": []}
    # Other drugs, or nothing refracture knows: no card.
    assert hook(client, sign, "edge-percent", {"draftOrders": drafts(ZOLEDRONIC)}).json() == {"cards": []}
    assert hook(client, sign, "edge-percent", {"draftOrders": drafts(PARACETAMOL)}).json() == {"cards": []}
    assert hook(client, sign, "edge-percent", {}).json() == {"cards": []}


def test_order_select_checks_only_the_selected_orders(loaded: tuple[Parts, TestClient]) -> None:
    _, client = loaded
    select = "refracture-order-select"
    orders = drafts(PARACETAMOL, DENOSUMAB)
    chosen = hook(client, select, "edge-percent", {"draftOrders": orders, "selections": ["MedicationRequest/draft-1"]})
    assert [c["indicator"] for c in chosen.json()["cards"]] == ["warning"]
    other = hook(client, select, "edge-percent", {"draftOrders": orders, "selections": ["MedicationRequest/draft-0"]})
    assert other.json() == {"cards": []}


def test_an_unknown_patient_is_no_error(empty: tuple[Parts, TestClient]) -> None:
    _, client = empty
    view = hook(client, "refracture-patient-view", "nobody-known")
    assert view.status_code == 200
    assert view.json() == {"cards": []}
    sign = hook(client, "refracture-order-sign", "nobody-known", {"draftOrders": drafts(DENOSUMAB)})
    [card] = sign.json()["cards"]
    check_card(card)
    assert card["indicator"] == "info"


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _hs256() -> str:
    now = int(time.time())
    secret = OctKey.import_key(json.dumps(KEY.as_dict(private=False)).encode())
    claims = {"iss": ISS, "aud": f"{BASE}/cds-services/refracture-patient-view", "iat": now, "exp": now + 60}
    return jwt.encode({"alg": "HS256", "kid": "ehr-1"}, {**claims, "jti": "x"}, secret, algorithms=["HS256"])


BAD_TOKENS: list[tuple[str, Any]] = [
    ("expired", lambda: token(exp=int(time.time()) - 600, iat=int(time.time()) - 700)),
    ("wrong audience", lambda: token(aud="https://someone-else.example/cds-services/refracture-patient-view")),
    ("audience of another service", lambda: token(aud=f"{BASE}/cds-services/refracture-order-sign")),
    ("unknown issuer", lambda: token(iss="https://evil.example.org")),
    ("no jti", lambda: token(jti=None)),
    ("issued in the future", lambda: token(iat=int(time.time()) + 3600)),
    ("lives too long", lambda: token(exp=int(time.time()) + 3600)),
    ("alg none", lambda: _unsigned({"iss": ISS, "aud": f"{BASE}/cds-services/refracture-patient-view"})),
    ("HS256 with the public key", _hs256),
    ("signed by another key", lambda: token(_key=OTHER_KEY)),
    ("jku not allow-listed", lambda: token(header={"jku": "https://evil.example.org/keys"})),
    ("not a JWT", lambda: "not-a-token"),
]


@pytest.mark.parametrize(("name", "make"), BAD_TOKENS, ids=[n for n, _ in BAD_TOKENS])
def test_a_bad_token_gets_401_with_a_json_body(empty: tuple[Parts, TestClient], name: str, make: Any) -> None:
    _, client = empty
    value = make()
    answer = hook(client, "refracture-patient-view", "p1", auth=bearer(value))
    assert answer.status_code == 401, (name, answer.text)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert value not in answer.text


def test_a_replayed_token_is_refused_and_an_allow_listed_jku_accepted(empty: tuple[Parts, TestClient]) -> None:
    _, client = empty
    once = token()
    assert hook(client, "refracture-patient-view", "p1", auth=bearer(once)).status_code == 200
    replayed = hook(client, "refracture-patient-view", "p1", auth=bearer(once))
    assert replayed.status_code == 401
    assert "jti" in replayed.json()["issue"][0]["details"]["text"]
    with_jku = token(header={"jku": JKU})
    assert hook(client, "refracture-patient-view", "p1", auth=bearer(with_jku)).status_code == 200
    assert client.post("/cds-services/refracture-patient-view", json={}).status_code == 401  # no token at all


def test_development_tokens_need_the_integration_role(empty: tuple[Parts, TestClient]) -> None:
    _, client = empty
    assert hook(client, "refracture-patient-view", "p1", auth=bearer("test-integration")).status_code == 200
    assert hook(client, "refracture-patient-view", "p1", auth=bearer("test-coordinator")).status_code == 403
    unknown = client.post("/cds-services/no-such-service", json={}, headers=bearer("test-integration"))
    assert unknown.status_code == 404
    wrong_hook = client.post(
        "/cds-services/refracture-order-sign",
        json={"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "p1"}},
        headers=bearer("test-integration"),
    )
    assert wrong_hook.status_code == 400


def test_feedback_is_recorded(empty: tuple[Parts, TestClient], database_url: str) -> None:
    _, client = empty
    service = "refracture-order-sign"
    body = {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {
                        "system": "https://refracture.dev/fhir/CodeSystem/cds-override-reason",
                        "code": "follow-on-planned",
                    },
                    "userComment": "zoledronic acid booked at the day clinic",
                },
                "outcomeTimestamp": "2026-05-04T09:10:00Z",
            },
            {"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": [{"id": str(uuid.uuid4())}]},
        ]
    }
    answer = client.post(f"/cds-services/{service}/feedback", json=body, headers=bearer(token(service)))
    assert answer.status_code == 200, answer.text
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT caller, service_id, outcome, override_code, jsonb_array_length(accepted_suggestions) "
            "FROM cds_feedback ORDER BY id"
        ).fetchall()
    assert rows == [(ISS, service, "overridden", "follow-on-planned", 0), (ISS, service, "accepted", None, 1)]
    assert query_one(database_url, "SELECT count(*) FROM audit_event WHERE action = 'cds-feedback'") == 1
    bad = client.post(
        f"/cds-services/{service}/feedback",
        json={"feedback": [{"card": "c", "outcome": "ignored"}]},
        headers=bearer(token(service)),
    )
    assert bad.status_code == 400
    assert client.post(f"/cds-services/{service}/feedback", json=body).status_code == 401
