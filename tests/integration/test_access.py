"""Who may do what: every route of the OpenAPI document with every role, tokens refused, limits, headers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from service.entrypoints.api.app import create_app
from service.platform.config import Settings
from service.security.authenticator import Authenticator
from service.security.tokens import DevTokens, JwksCache, TokenVerifier
from tests.support.databases import table_counts
from tests.support.http import FHIR_JSON
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.records import t_score
from tests.support.settings import command_env, make_settings
from tests.support.tokens import TOKENS

pytestmark = pytest.mark.integration

FHIR = FHIR_JSON
INTEGRATION, COORDINATOR, ADMIN = "integration-client", "care-coordinator", "administrator"
FLS_LEAD = "fls-lead"
BEARER = {
    INTEGRATION: "test-integration",
    COORDINATOR: "test-coordinator",
    ADMIN: "test-admin",
    FLS_LEAD: "test-fls-lead",
}
ISSUER = "https://idp.example.org"
AUDIENCE = "refracture-test"

# The policy, stated independently of the code: who may call each route of the OpenAPI document.
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/fhir/metadata")}
# CDS Hooks discovery is public by the specification's convention (no patient data); the calls take the EHR's JWT
# (tests/integration/test_cds_hooks.py) or, outside production, an integration-client development token.
PUBLIC |= {("GET", "/cds-services")}
POLICY: dict[tuple[str, str], set[str]] = {
    ("POST", "/fhir"): {INTEGRATION},
    ("POST", "/fhir/{resource_type}"): {INTEGRATION},
    ("PUT", "/fhir/{resource_type}/{resource_id}"): {INTEGRATION},
    ("GET", "/fhir/{resource_type}/{resource_id}"): {INTEGRATION, COORDINATOR},
    ("GET", "/fhir/RiskAssessment"): {INTEGRATION, COORDINATOR},
    ("GET", "/fhir/CarePlan"): {INTEGRATION, COORDINATOR},
    ("GET", "/fhir/Task"): {INTEGRATION, COORDINATOR},
    ("GET", "/fhir/CodeSystem"): {INTEGRATION, COORDINATOR, ADMIN},
    ("GET", "/api/worklist"): {COORDINATOR},
    ("GET", "/api/worklist/counts"): {COORDINATOR},
    ("GET", "/api/worklist.csv"): {COORDINATOR},
    ("POST", "/api/worklist/searches"): {COORDINATOR},
    ("GET", "/api/patients/{patient_id}"): {COORDINATOR},
    ("POST", "/api/patients/{patient_id}/break-glass"): {COORDINATOR},
    ("POST", "/api/alerts/{alert_id}/actions"): {COORDINATOR},
    ("GET", "/api/terminology/unrecognised"): {ADMIN},
    ("GET", "/api/audit"): {ADMIN},
    ("GET", "/api/audit/$export"): {ADMIN},
    # Subscription notifications: the EHR's header secret, or an integration client's token.
    ("POST", "/fhir/$subscription-hook/{subscription_id}"): {INTEGRATION},
    ("PUT", "/fhir/$subscription-hook/{subscription_id}/{resource_type}/{resource_id}"): {INTEGRATION},
    ("GET", "/api/model/calibration"): {COORDINATOR, ADMIN},
    ("GET", "/api/model/monitoring"): {COORDINATOR, ADMIN},
    ("POST", "/cds-services/{service_id}"): {INTEGRATION},
    ("POST", "/cds-services/{service_id}/feedback"): {INTEGRATION},
}
# The FLS quality measures (docs/measures.md): the fls-lead role and administrators; the lead reads nothing else but
# the CodeSystems (any signed-in caller). The drill-down lists patients (audited per patient).
POLICY |= {
    ("GET", "/fhir/Measure"): {ADMIN, FLS_LEAD},
    ("GET", "/fhir/Measure/{measure_id}"): {ADMIN, FLS_LEAD},
    ("GET", "/fhir/Measure/{measure_id}/$evaluate-measure"): {ADMIN, FLS_LEAD},
    ("GET", "/fhir/MeasureReport"): {ADMIN, FLS_LEAD},
    ("GET", "/fhir/MeasureReport/{report_id}"): {ADMIN, FLS_LEAD},
    ("GET", "/api/measures/{measure_id}/patients"): {ADMIN, FLS_LEAD},
}
POLICY[("GET", "/fhir/CodeSystem")] |= {FLS_LEAD}
OBSERVATION = t_score("o1", day=None)


class IssuerStandIn:
    """The hospital's issuer: a key and its JWKS, served to refracture through an httpx MockTransport."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(lambda _: httpx.Response(200, json=KeySet([self.key]).as_dict(private=False)))

    def token(self, key: Any = None, **claims: Any) -> str:
        import time

        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ehr-engine", "exp": int(time.time()) + 300, **claims}
        return jwt.encode(
            {"alg": "RS256", "kid": "k1"}, {k: v for k, v in body.items() if v is not None}, key or self.key
        )


@pytest.fixture
def issuer() -> IssuerStandIn:
    return IssuerStandIn()


@pytest.fixture
def app_client(settings: Settings, issuer: IssuerStandIn) -> Iterator[tuple[Parts, TestClient]]:
    parts = build_parts(settings, queue=RecordingQueue())
    jwks = JwksCache(lambda: f"{ISSUER}/jwks", httpx.Client(transport=issuer.transport()))
    parts.authenticator = Authenticator(
        DevTokens(TOKENS), TokenVerifier(ISSUER, AUDIENCE, jwks, ["RS256", "ES256"], leeway_s=60)
    )
    with TestClient(api_app(parts), raise_server_exceptions=False) as client:
        yield parts, client
    parts.close()


def _request(client: TestClient, method: str, path: str, token: str | None) -> httpx.Response:
    filled = (
        path.replace("{resource_type}", "Observation")
        .replace("{resource_id}", "o1")
        .replace("{patient_id}", "p1")
        .replace("{alert_id}", str(uuid.uuid4()))
        .replace("{subscription_id}", "ehr")
        .replace("{measure_id}", "fls-identified")
        .replace("{report_id}", "ab12")
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    params = {"subject": "Patient/p1"} if filled in ("/fhir/RiskAssessment", "/fhir/CarePlan", "/fhir/Task") else {}
    if method == "GET":
        return client.get(filled, headers=headers, params=params)
    if filled == "/fhir":
        body: Any = {"resourceType": "Bundle", "type": "batch", "entry": []}
    elif filled.startswith("/fhir"):
        body = OBSERVATION
    else:
        body = {"action": "acknowledge"}
    content_type = FHIR if filled.startswith("/fhir") else {"Content-Type": "application/json"}
    return client.request(method, filled, headers={**headers, **content_type}, content=json.dumps(body))


def test_every_route_with_every_role(app_client: tuple[Parts, TestClient]) -> None:
    _, client = app_client
    document = client.app.openapi()  # type: ignore[attr-defined]
    routes = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert routes == PUBLIC | set(POLICY), "a route without a stated policy (or a policy without a route)"
    for method, path in sorted(routes):
        anonymous = _request(client, method, path, None)
        if (method, path) in PUBLIC:
            assert anonymous.status_code not in (401, 403), (method, path)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json()["resourceType"] == "OperationOutcome"
        for role, token in BEARER.items():
            answer = _request(client, method, path, token)
            if role in POLICY[(method, path)]:
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert answer.status_code == 403, (method, path, role, answer.status_code)
                assert answer.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("page", "token", "status"),
    [
        ("/worklist", None, 303),
        ("/worklist", "test-integration", 403),
        ("/worklist", "test-admin", 403),
        ("/worklist", "test-coordinator", 200),
        ("/worklist/patients/p1", None, 303),
        ("/worklist/patients/p1", "test-integration", 403),
        ("/worklist/model", None, 303),
        ("/worklist/model", "test-integration", 403),
        ("/worklist/model", "test-admin", 200),
        ("/worklist/model", "test-coordinator", 200),
        ("/auth/sign-in", None, 200),
    ],
)
def test_the_pages_need_a_coordinator(
    app_client: tuple[Parts, TestClient], page: str, token: str | None, status: int
) -> None:
    _, client = app_client
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.get(page, headers=headers, follow_redirects=False)
    assert answer.status_code == status
    if status == 303:
        assert answer.headers["location"].startswith("/auth/sign-in?next=")


def test_an_action_form_needs_a_coordinator(app_client: tuple[Parts, TestClient]) -> None:
    _, client = app_client
    url = f"/worklist/alerts/{uuid.uuid4()}"
    form = {"action": "acknowledge"}
    assert client.post(url, data=form, follow_redirects=False).status_code == 303  # to sign-in
    integration = client.post(url, data=form, headers={"Authorization": "Bearer test-integration"})
    assert integration.status_code == 403


def test_a_jwt_from_the_issuer_is_accepted_and_limited_to_its_scopes(
    app_client: tuple[Parts, TestClient], issuer: IssuerStandIn, database_url: str
) -> None:
    _, client = app_client
    token = issuer.token(scope="system/Observation.write", client_id="ehr-engine")
    headers = {**FHIR, "Authorization": f"Bearer {token}"}
    assert client.put("/fhir/Observation/o1", content=json.dumps(OBSERVATION), headers=headers).status_code == 201
    before = table_counts(database_url)
    patient = {"resourceType": "Patient", "id": "p1"}
    refused = client.put("/fhir/Patient/p1", content=json.dumps(patient), headers=headers)
    assert refused.status_code == 403
    assert "Patient" in refused.json()["issue"][0]["details"]["text"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient, "request": {"method": "PUT", "url": "Patient/p1"}},
            {"resource": {**OBSERVATION, "id": "o2"}, "request": {"method": "PUT", "url": "Observation/o2"}},
        ],
    }
    assert client.post("/fhir", content=json.dumps(bundle), headers=headers).status_code == 403
    assert table_counts(database_url) == before  # nothing of the refused Bundle was written
    read = client.get("/fhir/Observation/o1", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 403  # a write-only scope reads nothing


BAD_TOKENS: list[tuple[str, dict[str, Any]]] = [
    ("expired", {"exp": 1_000_000_000}),
    ("wrong audience", {"aud": "someone-else"}),
    ("wrong issuer", {"iss": "https://evil.example.org"}),
    ("wrongly signed", {"_key": "other"}),
    ("wrong algorithm", {"_alg": "HS256"}),
]


@pytest.mark.parametrize(("name", "change"), BAD_TOKENS, ids=[n for n, _ in BAD_TOKENS])
def test_bad_tokens_get_401_with_an_operation_outcome(
    app_client: tuple[Parts, TestClient], issuer: IssuerStandIn, name: str, change: dict[str, Any]
) -> None:
    _, client = app_client
    claims = {k: v for k, v in change.items() if not k.startswith("_")}
    if change.get("_key") == "other":
        token = issuer.token(RSAKey.generate_key(2048), **claims)
    elif change.get("_alg") == "HS256":
        from joserfc.jwk import OctKey

        secret = OctKey.import_key(json.dumps(issuer.key.as_dict(private=False)).encode())
        token = jwt.encode(
            {"alg": "HS256", "kid": "k1"}, {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 9e9}, secret
        )
    else:
        token = issuer.token(**claims)
    answer = client.get("/fhir/CodeSystem", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith('Bearer realm="refracture", error="invalid_token"')
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert token not in answer.text


def _crafted(header: dict[str, Any]) -> str:
    import base64

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part({'iss': ISSUER, 'aud': AUDIENCE, 'sub': 'x', 'exp': 9e9})}.AAAA"


@pytest.mark.parametrize(
    "alg",
    ['RS256", error_description="forged', "☃-not-latin-1", "x" * 5000, "RS256\r\nSet-Cookie: a=b"],
    ids=["quote", "non-latin-1", "long", "crlf"],
)
def test_the_challenge_never_quotes_the_token(app_client: tuple[Parts, TestClient], alg: str) -> None:
    # The header's alg came back in error_description unescaped, and a non-Latin-1 one was a 500.
    _, client = app_client
    answer = client.get("/fhir/CodeSystem", headers={"Authorization": f"Bearer {_crafted({'alg': alg, 'kid': 'k1'})}"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        'Bearer realm="refracture", error="invalid_token", error_description="the token is not valid"'
    )
    assert answer.json()["issue"][0]["details"]["text"] in (
        "the token is not valid (its algorithm is not allowed)",
        "the token is not valid",
    )
    assert alg not in answer.text


def test_a_flood_gets_429_with_retry_after(services: LocalServices, database_url: str) -> None:
    flooder = f"flood-{uuid.uuid4().hex[:8]}"  # a client of its own: the counter lives in the shared Redis
    settings = make_settings(
        services,
        database_url,
        rate_limit_per_minute=5,
        rate_limit_anonymous_per_minute=5,
        auth_dev_tokens={flooder: {"sub": flooder, "roles": [ADMIN]}},
    )
    parts = build_parts(settings, queue=RecordingQueue())
    # An address of its own: the anonymous counter is per address (tests/integration/test_throttle.py).
    here = (f"10.99.{uuid.uuid4().bytes[0]}.{uuid.uuid4().bytes[1]}", 40000)
    headers = {"Authorization": f"Bearer {flooder}"}
    with TestClient(api_app(parts), headers=headers, client=here) as client:
        statuses = [client.get("/fhir/CodeSystem").status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5
        assert set(statuses[5:]) == {429}
        limited = client.get("/fhir/CodeSystem")
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["issue"][0]["code"] == "throttled"
        # Guessing tokens is throttled too, by address.
        guesses = [
            client.get("/fhir/CodeSystem", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(8)
        ]
        assert guesses[:5] == [401] * 5
        assert set(guesses[5:]) == {429}
    parts.close()


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, False),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Referer": "https://evil.example/page"}, False),
        ({"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": "http://testserver"}, True),
        ({"Referer": "http://testserver/worklist"}, True),
    ],
    ids=["none", "other site", "opaque origin", "other referer", "cross-site fetch", "same origin", "same referer"],
)
def test_cookie_authenticated_api_changes_need_our_origin(
    app_client: tuple[Parts, TestClient], headers: dict[str, str], allowed: bool
) -> None:
    # A page elsewhere could post to the JSON API with the coordinator's cookie: it has no CSRF token to check.
    parts, client = app_client
    cookie, _ = parts.sessions.start({"sub": "coordinator.one", "roles": [COORDINATOR]})
    client.cookies.set("refracture_session", cookie)
    try:
        changes = [
            client.post(f"/api/alerts/{uuid.uuid4()}/actions", json={"action": "acknowledge"}, headers=headers),
            client.post("/api/worklist/searches", json={"q": "zeta"}, headers=headers),
        ]
        for answer in changes:
            assert (answer.status_code != 403) is allowed, answer.text
            if not allowed:
                assert "Origin" in answer.json()["issue"][0]["details"]["text"]
        # Reads need no origin; a bearer token is no cookie a page could ride on.
        assert client.get("/api/worklist", headers=headers).status_code == 200
    finally:
        client.cookies.clear()
    token = {"Authorization": "Bearer test-coordinator"}
    bearer = client.post("/api/worklist/searches", json={"q": "zeta"}, headers=token)
    assert bearer.status_code == 201


def test_security_headers_and_request_ids(app_client: tuple[Parts, TestClient]) -> None:
    _, client = app_client
    page = client.get("/auth/sign-in")
    api = client.get("/fhir/metadata", headers={"X-Request-Id": "trace-123"})
    for answer in (page, api):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert "script-src" not in answer.headers["content-security-policy"]
    assert api.headers["x-request-id"] == "trace-123"
    made_up = client.get("/fhir/metadata", headers={"X-Request-Id": "bad id <script>"})
    assert made_up.headers["x-request-id"] != "bad id <script>"
    uuid.UUID(made_up.headers["x-request-id"])


def test_production_serves_no_api_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    with command_env(monkeypatch, ENVIRONMENT="production", AUTH_ISSUER=ISSUER, AUTH_AUDIENCE=AUDIENCE):
        app = create_app()
        assert app.docs_url is None
        assert app.openapi_url is None


def test_a_huge_body_to_the_json_api_is_refused_before_it_is_read(app_client: tuple[Parts, TestClient]) -> None:
    _, client = app_client
    url = f"/api/alerts/{uuid.uuid4()}/actions"
    headers = {"Authorization": "Bearer test-coordinator", "Content-Type": "application/json"}
    body = json.dumps({"action": "note", "note": "x" * (2 * 1024 * 1024)})
    declared = client.post(url, content=body, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["resourceType"] == "OperationOutcome"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"action": "note", "note": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    streamed = client.post(url, content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert streamed.json()["resourceType"] == "OperationOutcome"
