"""Signing in to the worklist page through an OpenID Connect provider (code flow with PKCE), sessions and CSRF."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.adapters.local_services import LocalServices
from service.api.app import create_app
from service.bootstrap import bootstrap
from tests.conftest import RecordingQueue, make_settings, query_one
from tests.oidc_standin import CLIENT_ID, CLIENT_SECRET, RunningOidc
from tests.worklist_data import FixedClock

pytestmark = pytest.mark.integration


@pytest.fixture
def idp() -> Iterator[RunningOidc]:
    running = RunningOidc().start()
    yield running
    running.stop()


@pytest.fixture
def client(services: LocalServices, worklist_url: str, idp: RunningOidc) -> Iterator[TestClient]:
    settings = make_settings(
        services,
        worklist_url,
        auth_issuer=idp.issuer,
        auth_audience="refracture-api",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        auth_dev_tokens={},
    )
    container = bootstrap(settings, queue=RecordingQueue(), clock=FixedClock())
    with TestClient(create_app(lambda: container), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def sign_in(client: TestClient, next_page: str = "/worklist") -> httpx.Response:
    """The browser's round trip: refracture → provider → refracture's callback."""
    start = client.get("/auth/sign-in", params={"next": next_page})
    assert start.status_code == 303
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302
    back = urlsplit(at_provider.headers["location"])
    return client.get(f"{back.path}?{back.query}")


def test_the_code_flow_with_pkce_signs_a_coordinator_in(
    client: TestClient, idp: RunningOidc, worklist_url: str
) -> None:
    assert client.get("/worklist").headers["location"] == "/auth/sign-in?next=%2Fworklist"
    done = sign_in(client, "/worklist?priority=urgent")
    assert done.status_code == 303
    assert done.headers["location"] == "/worklist?priority=urgent"
    cookie = done.headers["set-cookie"]
    assert "refracture_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    page = client.get("/worklist")
    assert page.status_code == 200
    assert "Signed in as <strong>Ada Nurse</strong>" in page.text

    [asked] = idp.provider.authorize_requests
    assert asked["code_challenge_method"] == "S256"
    assert asked["response_type"] == "code"
    assert asked["redirect_uri"] == "http://testserver/auth/callback"
    assert len(asked["state"]) >= 20
    assert len(asked["nonce"]) >= 20
    [exchanged] = idp.provider.token_requests
    assert len(exchanged["code_verifier"]) >= 43  # RFC 7636: 43 to 128 characters
    # Only a hash of the session id is stored: a copy of the table is not a set of cookies.
    session_id = client.cookies["refracture_session"]
    assert (
        query_one(
            worklist_url,
            "SELECT count(*) FROM web_session WHERE id_hash = %s",
            hashlib.sha256(session_id.encode()).digest(),
        )
        == 1
    )
    assert query_one(worklist_url, "SELECT count(*) FROM web_session WHERE id_hash = %s", session_id.encode()) == 0


def test_a_callback_works_once_and_only_for_its_state(client: TestClient, idp: RunningOidc) -> None:
    start = client.get("/auth/sign-in")
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    back = urlsplit(at_provider.headers["location"])
    state = parse_qs(back.query)["state"][0]
    forged = client.get("/auth/callback", params={"code": "whatever", "state": "not-ours"})
    assert forged.status_code == 400
    assert client.get(f"{back.path}?{back.query}").status_code == 303
    client.cookies.set("refracture_signin", state)  # even from the browser that started it
    replayed = client.get(f"{back.path}?{back.query}")
    assert replayed.status_code == 400  # the state was used
    assert "expired or was already used" in replayed.text
    assert state


@pytest.mark.parametrize(
    "forged",
    [{"aud": "someone-else"}, {"nonce": "from-another-sign-in"}, {"iss": "https://evil.example.org"}, {"exp": 1}],
    ids=["audience", "nonce", "issuer", "expired"],
)
def test_an_id_token_that_does_not_check_out_is_refused(
    client: TestClient, idp: RunningOidc, forged: dict[str, object]
) -> None:
    idp.provider.person = {**idp.provider.person, **forged}  # the provider signs whatever it is given
    failed = sign_in(client)
    assert failed.status_code == 401
    assert "Sign-in failed" in failed.text
    assert "refracture_session" not in failed.headers.get("set-cookie", "")


def test_a_person_without_the_coordinator_role_signs_in_but_sees_no_worklist(
    client: TestClient, idp: RunningOidc
) -> None:
    idp.provider.person = {"sub": "clerk.bo", "name": "Bo Clerk", "roles": []}
    assert sign_in(client).status_code == 303
    refused = client.get("/worklist")
    assert refused.status_code == 403
    assert "role does not include the worklist" in refused.text


def test_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session(
    client: TestClient, idp: RunningOidc, worklist_url: str
) -> None:
    sign_in(client)
    page = client.get("/worklist").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    alert_id = re.search(r'<tr data-alert="([^"]+)"', page)
    assert alert_id is not None
    url = f"/worklist/alerts/{alert_id.group(1)}"
    missing = client.post(url, data={"action": "acknowledge", "back": "/worklist"})
    assert missing.status_code == 403
    wrong = client.post(url, data={"action": "acknowledge", "back": "/worklist", "csrf": "guess"})
    assert wrong.status_code == 403
    assert query_one(worklist_url, "SELECT status FROM alert WHERE id = %s::uuid", alert_id.group(1)) == "open"
    right = client.post(url, data={"action": "acknowledge", "back": "/worklist", "csrf": csrf.group(1)})
    assert right.status_code == 303
    assert query_one(worklist_url, "SELECT actor FROM alert_event WHERE action = 'acknowledge'") == "nurse.ada"

    old_cookie = client.cookies["refracture_session"]
    assert client.post("/auth/sign-out", data={"csrf": "guess"}).status_code == 403
    out = client.post("/auth/sign-out", data={"csrf": csrf.group(1)})
    assert out.status_code == 303
    assert query_one(worklist_url, "SELECT count(*) FROM web_session") == 0
    # The server forgot the session: the old cookie is worth nothing.
    client.cookies.set("refracture_session", old_cookie)
    assert client.get("/worklist").status_code == 303


def test_sign_in_cannot_be_turned_into_an_open_redirect(client: TestClient) -> None:
    done = sign_in(client, "https://evil.example.org/phish")
    assert done.headers["location"] == "/worklist"
    done = sign_in(client, "//evil.example.org")
    assert done.headers["location"] == "/worklist"
