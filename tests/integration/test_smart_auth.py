"""SMART Backend Services against a token endpoint stand-in: the assertion, token reuse, refresh after a 401."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from service.adapters.ehr.auth import SmartBackendAuth, smart_scopes
from service.adapters.ehr.client import EhrClient
from service.adapters.ehr.factory import make_ehr_client
from service.platform.config import Settings
from service.platform.errors import EhrRejected
from tests.ehr_standin import RunningStandIn, generate_key
from tests.support.clock import ManualClock

pytestmark = pytest.mark.integration


def configure(ehr: RunningStandIn, algorithm: str = "RS384") -> bytes:
    ehr.app.reset()
    private_pem, public_key = generate_key(algorithm)
    ehr.app.require_token = True
    ehr.app.public_key = public_key
    ehr.app.key_id = "refracture-key-1"
    ehr.app.client_id = "refracture-client"
    ehr.app.token_url = f"http://127.0.0.1:{ehr.port}/token"
    return private_pem


CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while CLIENTS:
        CLIENTS.pop().close()


def smart(
    ehr: RunningStandIn, pem: bytes, algorithm: str = "RS384", clock: Any = None, style: str = "v2"
) -> tuple[EhrClient, SmartBackendAuth]:
    http = httpx.Client(timeout=5)
    CLIENTS.append(http)
    kwargs: dict[str, Any] = {"clock": clock} if clock else {}
    auth = SmartBackendAuth(
        ehr.app.token_url, "refracture-client", pem, "refracture-key-1", algorithm, smart_scopes(style), http, **kwargs
    )
    return EhrClient(ehr.base_url, auth, http), auth


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_the_assertion_is_what_smart_asks_for(ehr: RunningStandIn, algorithm: str) -> None:
    pem = configure(ehr, algorithm)
    client, auth = smart(ehr, pem, algorithm)
    assert client.metadata()["resourceType"] == "CapabilityStatement"  # accepted: the stand-in checked every claim
    (request,) = ehr.app.token_requests
    assertion = jwt.decode(request["client_assertion"], ehr.app.public_key, algorithms=[algorithm])
    assert assertion.header["alg"] == algorithm  # not the RS256 library default
    assert assertion.header["kid"] == "refracture-key-1"
    claims = assertion.claims
    assert claims["iss"] == claims["sub"] == "refracture-client"
    assert claims["aud"] == ehr.app.token_url
    assert 0 < claims["exp"] - claims["iat"] <= 300  # at most five minutes
    assert request["scope"] == "system/RiskAssessment.cu system/CarePlan.cu system/Provenance.cu system/Task.cu"
    assert auth.assertion() != auth.assertion()  # a unique jti every time


def test_v1_scopes_by_configuration() -> None:
    assert smart_scopes("v1") == (
        "system/RiskAssessment.write system/CarePlan.write system/Provenance.write system/Task.write"
    )


def test_the_token_is_reused_until_it_is_about_to_expire(ehr: RunningStandIn) -> None:
    pem = configure(ehr)
    clock = ManualClock(time.time())
    ehr.app.clock = clock  # the EHR and refracture agree on the time
    client, _ = smart(ehr, pem, clock=clock)
    for _ in range(5):
        client.metadata()
    assert len(ehr.app.token_requests) == 1
    clock.now += 239  # the token lives 300 s; it is renewed 60 s before it ends
    client.metadata()
    assert len(ehr.app.token_requests) == 1
    clock.now += 2
    client.metadata()
    assert len(ehr.app.token_requests) == 2


def test_a_401_triggers_one_refresh(ehr: RunningStandIn) -> None:
    pem = configure(ehr)
    client, _ = smart(ehr, pem)
    client.metadata()
    ehr.app.revoke_tokens()  # the EHR forgot our token
    assert client.metadata()["resourceType"] == "CapabilityStatement"
    assert len(ehr.app.token_requests) == 2
    statuses = [r.path for r in ehr.app.requests]
    assert statuses.count("/metadata") == 3  # the refused one, then the retry with the new token


def test_a_wrong_key_is_refused_not_retried(ehr: RunningStandIn) -> None:
    configure(ehr)
    other_pem, _ = generate_key("RS384")
    client, _ = smart(ehr, other_pem)
    with pytest.raises(EhrRejected) as refused:
        client.metadata()
    assert refused.value.status == 400
    assert refused.value.outcome["error"] == "invalid_client"


def test_settings_build_a_smart_client_and_refuse_incomplete_ones(ehr: RunningStandIn, tmp_path: Path) -> None:
    pem = configure(ehr)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(pem)
    settings = Settings(
        ehr_base_url=ehr.base_url,
        ehr_auth="smart",
        ehr_token_url=ehr.app.token_url,
        ehr_client_id="refracture-client",
        ehr_private_key_file=key_file,
        ehr_key_id="refracture-key-1",
    )
    client = make_ehr_client(settings)
    assert client is not None
    try:
        assert client.metadata()["resourceType"] == "CapabilityStatement"
    finally:
        client.close()
    with pytest.raises(ValueError, match="REFRACTURE_EHR_TOKEN_URL"):
        make_ehr_client(Settings(ehr_base_url=ehr.base_url, ehr_auth="smart"))
    with pytest.raises(ValueError, match="REFRACTURE_EHR_TOKEN"):
        make_ehr_client(Settings(ehr_base_url=ehr.base_url, ehr_auth="bearer"))
    assert make_ehr_client(Settings(ehr_base_url=None)) is None
