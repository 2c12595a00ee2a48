"""Access tokens: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from service.platform.config import Settings
from service.security.authenticator import Authenticator, make_authenticator
from service.security.tokens import AuthError, DevTokens, JwksCache, TokenVerifier

ISSUER = "https://idp.example.org/realms/hospital"
AUDIENCE = "https://refracture.example.org"
NOW = 1_800_000_000


class Issuer:
    """Keys and a JWKS endpoint (httpx MockTransport) that count how often they are fetched."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})]
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(200, json=KeySet(self.keys).as_dict(private=False))

    def sign(self, claims: dict[str, Any], key: Any = None, alg: str = "RS256", kid: str | None = "rsa-1") -> str:
        header: dict[str, Any] = {"alg": alg, **({"kid": kid} if kid else {})}
        return jwt.encode(header, claims, key or self.keys[0], algorithms=[alg])


def claims(**changes: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "ehr", "exp": NOW + 300, "iat": NOW, "scope": "system/*.write"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
def verifier(issuer: Issuer) -> TokenVerifier:
    http = httpx.Client(transport=httpx.MockTransport(issuer.handler))
    jwks = JwksCache(lambda: "https://idp.example.org/jwks", http, refresh_interval_s=30, clock=lambda: clock[0])
    return TokenVerifier(ISSUER, AUDIENCE, jwks, ["RS256", "ES256"], leeway_s=60, now=lambda: NOW)


clock = [0.0]


def test_a_valid_token_gives_its_principal(issuer: Issuer, verifier: TokenVerifier) -> None:
    principal = verifier.verify(issuer.sign(claims(client_id="ehr-engine")))
    assert principal.subject == "ehr"
    assert principal.client_id == "ehr-engine"
    assert principal.may_write("Observation")


def _none_token(body: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'kid': 'rsa-1'})}.{part(body)}."


REFUSED: list[tuple[str, Callable[[Issuer], str], str]] = [
    ("expired", lambda i: i.sign(claims(exp=NOW - 61)), "expired"),
    ("expired within the leeway is fine, beyond it is not", lambda i: i.sign(claims(exp=NOW - 120)), "expired"),
    ("not yet valid", lambda i: i.sign(claims(nbf=NOW + 120)), "not yet valid"),
    ("wrong issuer", lambda i: i.sign(claims(iss="https://evil.example.org")), "iss"),
    ("wrong audience", lambda i: i.sign(claims(aud="https://other-service.example.org")), "aud"),
    ("no audience", lambda i: i.sign(claims(aud=None)), "aud"),
    ("no expiry", lambda i: i.sign(claims(exp=None)), "exp"),
    ("signed by another key", lambda i: i.sign(claims(), RSAKey.generate_key(2048), kid="rsa-1"), "not valid"),
    ("alg none", lambda i: _none_token(claims()), "not valid"),
    (
        "HS256 with the public key as the secret",
        lambda i: i.sign(claims(), OctKey.import_key(json.dumps(i.keys[0].as_dict(private=False)).encode()), "HS256"),
        "not valid",
    ),
    (
        "an algorithm outside the allow-list",
        lambda i: i.sign(claims(), i.keys[0], "RS512"),
        "not valid",
    ),
    ("not a JWT", lambda i: "not-a-token", "not"),
    ("three dots of garbage", lambda i: "a.b.c", "not"),
]


@pytest.mark.parametrize(("name", "make", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_tokens_are_refused_with_a_reason(
    issuer: Issuer, verifier: TokenVerifier, name: str, make: Callable[[Issuer], str], reason: str
) -> None:
    token = make(issuer)
    with pytest.raises(AuthError) as refused:
        verifier.verify(token)
    assert reason in str(refused.value)
    assert token not in str(refused.value)  # the token never appears in a message


def test_within_the_leeway_an_expired_token_still_passes(issuer: Issuer, verifier: TokenVerifier) -> None:
    assert verifier.verify(issuer.sign(claims(exp=NOW - 30))).subject == "ehr"


def test_keys_rotate_an_unknown_kid_fetches_the_jwks_again_at_most_every_interval(
    issuer: Issuer, verifier: TokenVerifier
) -> None:
    verifier.verify(issuer.sign(claims()))
    assert issuer.fetches == 1
    verifier.verify(issuer.sign(claims()))
    assert issuer.fetches == 1  # cached
    clock[0] += 31
    new_key = ECKey.generate_key("P-256", parameters={"kid": "ec-2"})
    issuer.keys.append(new_key)
    assert verifier.verify(issuer.sign(claims(), new_key, "ES256", "ec-2")).subject == "ehr"
    assert issuer.fetches == 2
    # A flood of made-up kids does not make us hammer the issuer.
    for n in range(5):
        with pytest.raises(AuthError):
            verifier.verify(issuer.sign(claims(), RSAKey.generate_key(2048), kid=f"made-up-{n}"))
    assert issuer.fetches == 2


def test_an_unreachable_issuer_is_a_server_error_not_an_invalid_token() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    jwks = JwksCache(lambda: "https://idp/jwks", httpx.Client(transport=httpx.MockTransport(down)))
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks, ["RS256"], now=lambda: NOW)
    with pytest.raises(AuthError) as refused:
        verifier.verify(Issuer().sign(claims()))
    assert refused.value.error == "server_error"


def test_symmetric_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        TokenVerifier(ISSUER, AUDIENCE, JwksCache(lambda: "", httpx.Client()), ["RS256", "HS256"])


def test_dev_tokens_match_exactly() -> None:
    dev = DevTokens({"s3cret": {"sub": "dev", "roles": ["care-coordinator"]}})
    found = dev.verify("s3cret")
    assert found is not None
    assert found.source == "dev-token"
    assert dev.verify("s3cret ") is None
    assert dev.verify("S3CRET") is None
    assert dev.verify("") is None


def test_production_refuses_dev_tokens_and_without_an_issuer_every_token() -> None:
    with pytest.raises(ValueError, match="development only"):
        Settings(environment="production", auth_dev_tokens={"t": {"sub": "x"}}, auth_issuer="i", auth_audience="a")
    # Production is the default, so it starts without an issuer (migrate, workers); the API then accepts no token.
    authenticator = make_authenticator(Settings(environment="production"))
    assert not authenticator.configured
    with pytest.raises(AuthError):
        authenticator.authenticate("anything")
    assert Settings(environment="production", auth_issuer="https://idp", auth_audience="refracture")


def test_time_is_not_the_wall_clock_in_these_tests() -> None:
    assert time.time() < NOW  # the tokens above would be "from the future" for a real clock: only NOW counts


def test_a_verified_token_is_answered_from_memory_until_it_expires(issuer: Issuer) -> None:
    now = [float(NOW)]
    http = httpx.Client(transport=httpx.MockTransport(issuer.handler))
    jwks = JwksCache(lambda: "https://idp.example.org/jwks", http, refresh_interval_s=30, clock=lambda: clock[0])
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks, ["RS256"], leeway_s=0, now=lambda: now[0])
    authenticator = Authenticator(DevTokens({}), verifier)
    token = issuer.sign(claims(exp=NOW + 100))
    assert authenticator.cached(token) is None  # never seen: must be checked
    assert authenticator.authenticate(token).subject == "ehr"
    cached = authenticator.cached(token)
    assert cached is not None
    assert cached.subject == "ehr"
    assert authenticator.cached(issuer.sign(claims(sub="other"))) is None  # another token is not this one
    now[0] = NOW + 100  # expired: checked again, and refused
    assert authenticator.cached(token) is None
    with pytest.raises(AuthError):
        authenticator.authenticate(token)


def test_the_cache_holds_a_verified_token_five_minutes_at_most(issuer: Issuer) -> None:
    now = [float(NOW)]
    http = httpx.Client(transport=httpx.MockTransport(issuer.handler))
    jwks = JwksCache(lambda: "https://idp.example.org/jwks", http, refresh_interval_s=30, clock=lambda: clock[0])
    authenticator = Authenticator(DevTokens({}), TokenVerifier(ISSUER, AUDIENCE, jwks, ["RS256"], now=lambda: now[0]))
    token = issuer.sign(claims(exp=NOW + 3600))
    authenticator.authenticate(token)
    now[0] = NOW + 299
    assert authenticator.cached(token) is not None
    now[0] = NOW + 300
    assert authenticator.cached(token) is None
