"""Throttling before authentication, and requests nobody authenticated for counted instead of audited one by one.

Each test sends from an address of its own: the counters live in the shared Redis for a minute or two.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.composition.parts import Parts
from service.devtools.local_services import LocalServices
from tests.oidc_standin import RunningOidc
from tests.support.databases import query_one
from tests.support.parts import api_app, build_parts
from tests.support.queue import RecordingQueue
from tests.support.settings import make_settings

pytestmark = pytest.mark.integration

CODING = "/fhir/CodeSystem"


def address() -> str:
    digits = uuid.uuid4().bytes
    return f"10.{digits[0]}.{digits[1]}.{digits[2]}"


def client_from(parts: Parts, host: str, **kwargs: object) -> TestClient:
    return TestClient(
        api_app(parts),
        raise_server_exceptions=False,
        client=(host, 40000),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def limited(services: LocalServices, database_url: str) -> Iterator[Parts]:
    settings = make_settings(services, database_url, rate_limit_anonymous_per_minute=5)
    parts = build_parts(settings, queue=RecordingQueue())
    yield parts
    parts.close()


def test_anonymous_requests_are_throttled_by_address_before_authentication(limited: Parts) -> None:
    # 120 anonymous requests once got 120 × 401 and no 429: only failed bearer tokens counted.
    flooder = address()
    with client_from(limited, flooder) as client:
        statuses = [client.get(CODING).status_code for _ in range(8)]
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}
        throttled = client.get(CODING)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        outcome = throttled.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "throttled"
        # Past the limit nothing from the address is looked at, not even a valid token...
        assert client.get(CODING, headers={"Authorization": "Bearer test-all"}).status_code == 429
        # ...but probes and scrapes still answer.
        assert client.get("/healthz").status_code == 200
    # Another address is not affected.
    with client_from(limited, address()) as other:
        assert other.get(CODING).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {"Cookie": "refracture_session=junk-session-id"},
        {"Authorization": "Bearer not-a-token"},
        {},
    ],
    ids=["junk session cookie", "bad bearer token", "unknown path"],
)
def test_junk_credentials_and_unknown_paths_count_too(limited: Parts, headers: dict[str, str]) -> None:
    path = "/no/such/path" if not headers else CODING
    with client_from(limited, address()) as client:
        statuses = [client.get(path, headers=headers).status_code for _ in range(8)]
    assert statuses[-1] == 429
    assert statuses[0] in (401, 404)


def test_an_address_found_under_its_limit_is_asked_again_once_it_floods(limited: Parts) -> None:
    # Credentialed requests skip the question for a second after a "no"; anonymous ones from the address end that.
    with client_from(limited, address()) as client:
        assert client.get(CODING, headers={"Authorization": "Bearer test-all"}).status_code == 200
        assert [client.get(CODING).status_code for _ in range(7)][-1] == 429
        assert client.get(CODING, headers={"Authorization": "Bearer test-all"}).status_code == 429


def test_an_authenticated_client_is_never_counted_as_anonymous(limited: Parts) -> None:
    # An interface engine's heavy traffic from one address: each request authenticates, so none counts.
    with client_from(limited, address(), headers={"Authorization": "Bearer test-all"}) as client:
        assert {client.get(CODING).status_code for _ in range(20)} == {200}


def test_anonymous_refusals_are_counted_not_one_audit_row_each(services: LocalServices, database_url: str) -> None:
    parts = build_parts(make_settings(services, database_url), queue=RecordingQueue())
    host = address()
    before = query_one(database_url, "SELECT count(*) FROM audit_event")
    with client_from(parts, host) as client:
        for _ in range(120):
            assert client.get(CODING).status_code == 401
        for _ in range(30):
            assert client.get("/no/such/path").status_code == 404
        assert client.get(CODING, headers={"Cookie": "refracture_session=junk"}).status_code == 401
        assert client.request("BREW", "/coffee").status_code in (404, 405)
        # An authenticated request is still audited row by row.
        assert client.get(CODING, headers={"Authorization": "Bearer test-all"}).status_code == 200
    parts.close()
    assert query_one(database_url, "SELECT count(*) FROM audit_event") == before + 1
    counts = {
        (row[0], row[1]): row[2]
        for row in _rows(
            database_url,
            "SELECT what, outcome, sum(requests)::int FROM refused_request_count WHERE source_ip = %s GROUP BY 1, 2",
            host,
        )
    }
    assert counts[("GET /fhir/CodeSystem", 401)] == 121
    assert counts[("GET unmatched", 404)] == 30
    assert sum(counts.values()) == 152
    assert all(what.split()[0] in ("GET", "OTHER") for what, _ in counts)


def _rows(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]


def test_oidc_sign_in_starts_are_bounded(services: LocalServices, database_url: str, idp: RunningOidc) -> None:
    # Each anonymous GET /auth/sign-in stores a pending sign-in: without a bound, anyone could fill the table.
    settings = make_settings(
        services,
        database_url,
        **idp.sign_in_settings(),
        rate_limit_anonymous_per_minute=10,
    )
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        with client_from(parts, address(), follow_redirects=False) as client:
            statuses = [client.get("/auth/sign-in").status_code for _ in range(15)]
    finally:
        parts.close()
    assert statuses[:10] == [303] * 10
    assert set(statuses[10:]) == {429}
    assert query_one(database_url, "SELECT count(*) FROM auth_pending") == 10


def test_sign_in_starts_are_bounded_for_the_whole_deployment(services: LocalServices, database_url: str) -> None:
    # Many addresses, each within its own limit, still cannot start more sign-ins than the deployment allows.
    settings = make_settings(services, database_url, rate_limit_sign_in_per_minute=4)
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        statuses = []
        for _ in range(6):
            with client_from(parts, address()) as client:
                statuses.append(client.get("/auth/sign-in").status_code)
    finally:
        parts.close()
    assert statuses[:4] == [200] * 4  # (no provider configured: the development form)
    assert set(statuses[4:]) == {429}


def test_subscription_notifications_with_their_own_secret_header_are_not_anonymous(
    services: LocalServices, database_url: str
) -> None:
    from tests.ehr_standin import RunningStandIn

    ehr = RunningStandIn().start()
    settings = make_settings(
        services,
        database_url,
        ehr_base_url=ehr.base_url,
        ehr_write_mode="pull",
        subscription_public_url="https://refracture.example.org",
        subscription_secret="feed-secret-for-tests",
        subscription_header="X-Feed-Secret",
        rate_limit_anonymous_per_minute=2,
    )
    parts = build_parts(settings, queue=RecordingQueue())
    try:
        with client_from(parts, address()) as client:
            hook = "/fhir/$subscription-hook/ehr"
            good = [client.post(hook, headers={"X-Feed-Secret": "feed-secret-for-tests"}).status_code for _ in range(5)]
            bad = [client.post(hook, headers={"X-Feed-Secret": "guess"}).status_code for _ in range(5)]
    finally:
        parts.close()
        ehr.stop()
    assert good == [200] * 5  # an EHR's busy feed is a known caller, never throttled as anonymous
    assert bad[:2] == [401, 401]
    assert set(bad[2:]) == {429}
