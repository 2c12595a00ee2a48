"""SMART App Launch of the worklist against a SMART launcher stand-in (tests/smart_launcher_standin.py): EHR launch
with a patient in context, standalone launch, the allow-list, the browser binding, PKCE and failed exchanges."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.adapters.oidc import code_challenge
from service.devtools.local_services import LocalServices
from service.entrypoints.api.launch_routes import launch_claims
from service.security.principal import principal_from_claims
from tests.smart_launcher_standin import RunningLauncher
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration

PATIENT = "edge-same-day-1"  # Zeta, Ines in the loaded worklist


@pytest.fixture
def client(services: LocalServices, worklist_url: str, launcher: RunningLauncher) -> Iterator[TestClient]:
    settings = make_settings(
        services,
        worklist_url,
        **launcher.launch_settings(launcher.fhir + "/"),  # a trailing slash in the setting is the same server
        auth_dev_tokens={},
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def launch(client: TestClient, **params: str) -> httpx.Response:
    """The browser's round trip: the EHR opens /launch → the EHR's authorize → refracture's callback."""
    start = client.get("/launch", params=params)
    assert start.status_code == 303, start.text
    at_ehr = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_ehr.status_code == 302, at_ehr.text
    back = urlsplit(at_ehr.headers["location"])
    return client.get(f"{back.path}?{back.query}")


def test_an_ehr_launch_with_a_patient_opens_that_patients_page_for_that_patient_only(
    client: TestClient, launcher: RunningLauncher, worklist_url: str
) -> None:
    done = launch(client, iss=launcher.fhir, launch=launcher.ehr.launch(PATIENT))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/worklist/patients/{PATIENT}"
    page = client.get(done.headers["location"])
    assert page.status_code == 200
    assert "<h1>Zeta, Ines</h1>" in page.text or "Zeta, Ines" in page.text
    assert "Signed in as <strong>Dr Grace Hopper</strong>" in page.text

    [asked] = launcher.ehr.authorize_requests
    assert asked["scope"].split() == ["launch", "openid", "fhirUser"]
    assert asked["aud"] == launcher.fhir
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == "http://testserver/launch/callback"
    [exchanged] = launcher.ehr.token_requests
    assert len(exchanged["code_verifier"]) >= 43
    assert code_challenge(exchanged["code_verifier"]) == asked["code_challenge"]  # RFC 7636 S256
    assert parse_qs(urlsplit(exchanged["redirect_uri"]).query) == {}

    # The session lasts as long as the EHR's grant (expires_in 3600 s), not the 8 h of a sign-in.
    lifetime = query_one(worklist_url, "SELECT extract(epoch FROM expires_at - created_at) FROM web_session")
    assert float(lifetime) == 3600
    # Limited to the patient in context: not the worklist, not another patient.
    assert client.get("/worklist").status_code == 403
    assert client.get("/worklist/patients/edge-percent").status_code == 403
    assert client.get(f"/api/patients/{PATIENT}").status_code == 200
    assert client.get("/api/patients/edge-percent").status_code == 403

    # The fhirUser is the signed-in person: the audit trail and the alert's history name them.
    signed_in = query_one(
        worklist_url, "SELECT actor FROM audit_event WHERE action = 'sign-in' AND patient_id = %s", PATIENT
    )
    assert signed_in == "Practitioner/dr-grace"
    read = query_one(
        worklist_url,
        "SELECT actor FROM audit_event WHERE action = 'read' AND patient_id = %s ORDER BY id LIMIT 1",
        PATIENT,
    )
    assert read == "Practitioner/dr-grace"
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    alert_id = re.search(r'action="/worklist/alerts/([^"]+)"', page.text)
    assert csrf is not None
    assert alert_id is not None
    acted = client.post(
        f"/worklist/alerts/{alert_id.group(1)}",
        data={"action": "acknowledge", "back": f"/worklist/patients/{PATIENT}", "csrf": csrf.group(1)},
    )
    assert acted.status_code == 303, acted.text
    actor = query_one(worklist_url, "SELECT actor FROM alert_event WHERE action = 'acknowledge'")
    assert actor == "Practitioner/dr-grace"


def test_a_coordinator_by_the_ehrs_roles_keeps_the_whole_worklist(
    client: TestClient, launcher: RunningLauncher
) -> None:
    launcher.ehr.person = {**launcher.ehr.person, "roles": ["care-coordinator"]}
    done = launch(client, iss=launcher.fhir, launch=launcher.ehr.launch(PATIENT))
    assert done.headers["location"] == f"/worklist/patients/{PATIENT}"
    assert client.get("/worklist").status_code == 200
    assert client.get("/worklist/patients/edge-percent").status_code == 200


def test_a_standalone_launch_asks_for_launch_patient(client: TestClient, launcher: RunningLauncher) -> None:
    launcher.ehr.standalone_patient = PATIENT
    done = launch(client)  # one EHR configured: no iss needed
    assert done.headers["location"] == f"/worklist/patients/{PATIENT}"
    [asked] = launcher.ehr.authorize_requests
    assert asked["scope"].split() == ["launch/patient", "openid", "fhirUser"]
    assert "launch" not in asked
    # Without a patient picked, the coordinator lands on the worklist.
    launcher.ehr.standalone_patient = None
    done = launch(client, iss=launcher.fhir)
    assert done.headers["location"] == "/worklist"
    assert client.get("/worklist").status_code == 200


@pytest.mark.parametrize(
    "iss",
    ["https://evil.example.org/fhir", "http://127.0.0.1:1/fhir", "{fhir}/other", "{fhir}.evil.example.org"],
)
def test_an_iss_off_the_allow_list_is_refused_before_anything_is_fetched(
    client: TestClient, launcher: RunningLauncher, iss: str
) -> None:
    refused = client.get("/launch", params={"iss": iss.format(fhir=launcher.fhir), "launch": "x"})
    assert refused.status_code == 400
    assert "not allowed to launch" in refused.text
    assert not launcher.ehr.authorize_requests


def test_an_ehr_launch_without_iss_is_refused(client: TestClient, launcher: RunningLauncher) -> None:
    assert client.get("/launch", params={"launch": launcher.ehr.launch(PATIENT)}).status_code == 400
    assert not launcher.ehr.authorize_requests


def test_a_launch_started_in_another_browser_is_refused(client: TestClient, launcher: RunningLauncher) -> None:
    attacker = TestClient(client.app, follow_redirects=False)
    start = attacker.get("/launch", params={"iss": launcher.fhir, "launch": launcher.ehr.launch(PATIENT)})
    at_ehr = httpx.get(start.headers["location"], follow_redirects=False)
    callback = urlsplit(at_ehr.headers["location"])
    victim = client.get(f"{callback.path}?{callback.query}")
    assert victim.status_code == 400
    assert "not started in this browser" in victim.text
    assert "refracture_session" not in victim.headers.get("set-cookie", "")
    assert not launcher.ehr.token_requests
    # A launch's state is no good at the provider's sign-in callback either.
    state = parse_qs(callback.query)["state"][0]
    attacker_at_oidc = attacker.get("/auth/callback", params={"code": "x", "state": state})
    assert attacker_at_oidc.status_code in (400, 404)
    assert not launcher.ehr.token_requests


def test_the_pkce_verifier_is_checked(client: TestClient, launcher: RunningLauncher) -> None:
    start = client.get("/launch", params={"iss": launcher.fhir, "launch": launcher.ehr.launch(PATIENT)})
    challenge = parse_qs(urlsplit(start.headers["location"]).query)["code_challenge"][0]
    at_ehr = httpx.get(start.headers["location"], follow_redirects=False)
    # Someone swaps the challenge the EHR holds for the code (an intercepted code redeemed without the verifier).
    [code] = list(launcher.ehr.codes)
    launcher.ehr.codes[code]["code_challenge"] = challenge[::-1]
    back = urlsplit(at_ehr.headers["location"])
    failed = client.get(f"{back.path}?{back.query}")
    assert failed.status_code == 401
    assert "Launch failed" in failed.text
    assert "refracture_session" not in client.cookies
    [exchanged] = launcher.ehr.token_requests
    assert exchanged["code_verifier"]


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"token_status": 500}, 401, "refused the code (500)"),
        ({"person": {"sub": "u-1", "name": "No FhirUser"}}, 401, "names no fhirUser"),
        ({"person": {"fhirUser": "Practitioner/dr-grace", "aud": "someone-else"}}, 401, "not valid"),
        ({"person": {"fhirUser": "Practitioner/dr-grace", "nonce": "another"}}, 401, "not valid"),
    ],
    ids=["token endpoint fails", "no fhirUser", "id token for another client", "nonce of another launch"],
)
def test_a_failed_token_exchange_signs_nobody_in(
    client: TestClient, launcher: RunningLauncher, change: dict[str, Any], status: int, words: str
) -> None:
    for name, value in change.items():
        setattr(launcher.ehr, name, value)
    failed = launch(client, iss=launcher.fhir, launch=launcher.ehr.launch(PATIENT))
    assert failed.status_code == status
    assert words in failed.text
    assert "refracture_session" not in client.cookies
    # The code and state were used: the same callback cannot be replayed into a session.
    assert client.get("/worklist").status_code == 303


def test_the_ehrs_error_and_a_reused_state_are_refused(client: TestClient, launcher: RunningLauncher) -> None:
    start = client.get("/launch", params={"iss": launcher.fhir, "launch": launcher.ehr.launch(PATIENT)})
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    denied = client.get("/launch/callback", params={"error": "access_denied", "state": state})
    assert denied.status_code == 401
    client.cookies.set("refracture_signin", state)
    again = client.get("/launch/callback", params={"code": "x", "state": state})
    assert again.status_code == 400


def test_an_unreachable_ehr_is_a_503(client: TestClient, launcher: RunningLauncher) -> None:
    launcher.stop()
    down = client.get("/launch", params={"iss": launcher.fhir, "launch": "x"})
    assert down.status_code == 503
    assert "SMART configuration cannot be read" in down.text


def test_launch_is_404_when_not_configured(services: LocalServices, worklist_url: str) -> None:
    parts = build_parts(make_settings(services, worklist_url), queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
        assert c.get("/launch", params={"iss": "https://ehr.example.org/fhir", "launch": "x"}).status_code == 404


@pytest.mark.parametrize(
    ("id_claims", "fhir_user", "patient", "roles", "bound"),
    [
        ({}, "Practitioner/p1", "pat-1", ["care-coordinator"], True),
        ({}, "https://ehr.example.org/fhir/PractitionerRole/r1", None, ["care-coordinator"], False),
        ({"roles": ["care-coordinator"]}, "Practitioner/p1", "pat-1", ["care-coordinator"], False),
        ({"roles": []}, "Practitioner/p1", "pat-1", [], True),
        ({}, "Patient/pat-1", "pat-1", [], True),
        ({}, "RelatedPerson/x", None, [], False),
    ],
)
def test_who_a_launch_signs_in(
    id_claims: dict[str, Any], fhir_user: str, patient: str | None, roles: list[str], bound: bool
) -> None:
    claims = launch_claims(
        id_claims, fhir_user, patient, "https://ehr/fhir", 1e10, "roles", "sites", ["care-coordinator"]
    )
    principal = principal_from_claims(claims)
    assert sorted(r.value for r in principal.roles) == roles
    assert principal.patient_bound is bound
    assert principal.subject == fhir_user
    if bound:
        assert principal.patient == patient
