"""Signing in to the worklist page through an OpenID Connect provider (code flow with PKCE), sessions and CSRF."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.devtools.local_services import LocalServices
from tests.oidc_standin import CLIENT_ID, RunningOidc
from tests.support.clock import ManualClock
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings
from tests.worklist_data import NOW

pytestmark = pytest.mark.integration


@pytest.fixture
def client(services: LocalServices, worklist_url: str, idp: RunningOidc) -> Iterator[TestClient]:
    settings = make_settings(
        services,
        worklist_url,
        **idp.sign_in_settings(),
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
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


# --- login CSRF, session lifetime, sign-out at the provider (issue 16, findings 4 and 9) -----------------------------
def test_another_browser_cannot_complete_an_attackers_sign_in(client: TestClient, idp: RunningOidc) -> None:
    # The attacker starts a sign-in and stops at the callback URL with their own code and state...
    attacker = TestClient(client.app, follow_redirects=False)
    start = attacker.get("/auth/sign-in")
    at_provider = httpx.get(start.headers["location"], follow_redirects=False)
    callback = urlsplit(at_provider.headers["location"])
    # ...and the victim's browser opens it: refused, nothing signed in, the attacker's state not used up.
    victim = client.get(f"{callback.path}?{callback.query}")
    assert victim.status_code == 400
    assert "not started in this browser" in victim.text
    assert "refracture_session" not in victim.headers.get("set-cookie", "")
    assert not idp.provider.token_requests
    assert attacker.get(f"{callback.path}?{callback.query}").status_code == 303


def test_the_state_cookie_is_host_prefixed_and_secure_over_https(client: TestClient, idp: RunningOidc) -> None:
    secure = TestClient(client.app, base_url="https://testserver", follow_redirects=False)
    start = secure.get("/auth/sign-in")
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-refracture_signin=")
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "Path=/" in cookie
    assert "Domain" not in cookie


def test_a_new_sign_in_ends_the_browsers_old_session(client: TestClient, worklist_url: str) -> None:
    sign_in(client)
    old = client.cookies["refracture_session"]
    sign_in(client)
    assert client.cookies["refracture_session"] != old
    assert query_one(worklist_url, "SELECT count(*) FROM web_session") == 1
    stale = TestClient(client.app, follow_redirects=False)
    stale.cookies.set("refracture_session", old)
    assert stale.get("/worklist").status_code == 303


def test_a_session_ends_when_idle_and_never_outlives_the_token(
    services: LocalServices, worklist_url: str, idp: RunningOidc
) -> None:
    from datetime import timedelta

    settings = make_settings(
        services,
        worklist_url,
        **idp.sign_in_settings(),
        session_idle_s=600,
    )
    clock = ManualClock(NOW)
    parts = build_parts(settings, queue=RecordingQueue(), clock=clock)
    try:
        with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
            sign_in(c)
            clock.now += timedelta(seconds=500)
            assert c.get("/worklist").status_code == 200  # used: the idle clock starts again
            clock.now += timedelta(seconds=500)
            assert c.get("/worklist").status_code == 200
            clock.now += timedelta(seconds=601)
            assert c.get("/worklist").status_code == 303  # idle too long
            assert query_one(worklist_url, "SELECT count(*) FROM web_session") == 0
            # The provider's ID token lives 300 s: the session ends with it, however active.
            import time as real_time

            clock.now = datetime.fromtimestamp(real_time.time(), UTC)
            done = sign_in(c)
            expires = query_one(worklist_url, "SELECT expires_at FROM web_session")
            assert expires <= clock.now + timedelta(seconds=301)
            assert "Max-Age=30" in done.headers["set-cookie"] or "Max-Age=29" in done.headers["set-cookie"]
            clock.now += timedelta(seconds=200)
            assert c.get("/worklist").status_code == 200
            clock.now += timedelta(seconds=120)
            assert c.get("/worklist").status_code == 303
    finally:
        parts.close()


def test_sign_out_also_ends_the_session_at_the_provider(client: TestClient, idp: RunningOidc) -> None:
    idp.provider.end_session = True
    sign_in(client)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/worklist").text)
    assert csrf is not None
    out = client.post("/auth/sign-out", data={"csrf": csrf.group(1)})
    assert out.status_code == 303
    target = urlsplit(out.headers["location"])
    assert f"{target.scheme}://{target.netloc}" == idp.issuer
    assert target.path == "/logout"
    query = parse_qs(target.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["post_logout_redirect_uri"] == ["http://testserver/auth/signed-out"]


def test_sign_out_from_another_site_is_refused(client: TestClient) -> None:
    sign_in(client)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/worklist").text)
    assert csrf is not None
    cross = client.post("/auth/sign-out", data={"csrf": csrf.group(1)}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert client.get("/worklist").status_code == 200


@pytest.fixture
def token_form(services: LocalServices, worklist_url: str) -> Iterator[TestClient]:
    parts = build_parts(make_settings(services, worklist_url), queue=RecordingQueue(), clock=ManualClock(NOW))
    with TestClient(api_app(parts), raise_server_exceptions=False, follow_redirects=False) as c:
        yield c
    parts.close()


def test_the_token_form_needs_its_csrf_token_and_this_sites_origin(token_form: TestClient) -> None:
    form = token_form.get("/auth/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    assert token_form.cookies["refracture_signin"] == csrf.group(1)
    fields = {"token": "test-coordinator", "next": "/worklist"}
    # Login CSRF: another site posts its own token into the victim's browser.
    assert token_form.post("/auth/sign-in", data=fields).status_code == 403
    assert token_form.post("/auth/sign-in", data={**fields, "csrf": "guess"}).status_code == 403
    cross = token_form.post(
        "/auth/sign-in", data={**fields, "csrf": csrf.group(1)}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert "refracture_session" not in token_form.cookies
    fresh = re.search(r'name="csrf" value="([^"]+)"', token_form.get("/auth/sign-in").text)
    assert fresh is not None
    done = token_form.post("/auth/sign-in", data={**fields, "csrf": fresh.group(1)})
    assert done.status_code == 303
    assert token_form.get("/worklist").status_code == 200


def test_the_token_form_is_off_in_production(services: LocalServices, worklist_url: str) -> None:
    settings = make_settings(
        services,
        worklist_url,
        environment="production",
        auth_dev_tokens={},
        auth_issuer="https://idp.example.org",
        auth_audience="refracture-api",
    )
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    try:
        with TestClient(api_app(parts), base_url="https://testserver", raise_server_exceptions=False) as c:
            page = c.get("/auth/sign-in")
            assert page.status_code == 404
            assert 'name="token"' not in page.text
            assert c.post("/auth/sign-in", data={"token": "anything", "csrf": "x"}).status_code == 403
    finally:
        parts.close()
