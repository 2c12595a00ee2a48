"""Authentication to the EHR: none, a static bearer token, or SMART Backend Services (client credentials with a
private_key_jwt assertion).

SMART's rules, which library defaults get wrong (shared reference, ecosystem §0.5): the assertion is signed with
RS384 or ES384, carries a kid header and a unique jti, and expires at most five minutes after it is made.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from service.platform.errors import EhrRejected, EhrTemporaryError

__all__ = ["Auth", "BearerAuth", "NoAuth", "SmartBackendAuth", "smart_scopes"]

ASSERTION_LIFETIME_S = 300  # SMART: exp no more than five minutes in the future
REFRESH_MARGIN_S = 60  # renew a token this long before it expires


class Auth(Protocol):
    """Gives the Authorization header for a request, and forgets a token the EHR refused."""

    def header(self) -> dict[str, str]:
        """The headers to add."""

    def invalidate(self) -> None:
        """Drop a cached token (after a 401), so the next header() fetches a new one."""


class NoAuth:
    """No authentication (a development EHR)."""

    def header(self) -> dict[str, str]:
        """See Auth."""
        return {}

    def invalidate(self) -> None:
        """See Auth."""


class BearerAuth:
    """A static bearer token from configuration."""

    def __init__(self, token: str) -> None:
        self._token = token

    def header(self) -> dict[str, str]:
        """See Auth."""
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """See Auth. A static token cannot be renewed."""


def smart_scopes(style: str) -> str:
    """The scopes refracture asks for: write RiskAssessment, CarePlan, Provenance and Task (issue 18)."""
    suffix = ".cu" if style == "v2" else ".write"
    return " ".join(f"system/{kind}{suffix}" for kind in ("RiskAssessment", "CarePlan", "Provenance", "Task"))


class SmartBackendAuth:
    """OAuth 2.0 client credentials with a signed JWT assertion; the access token is cached until shortly before
    it expires."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        private_key_pem: bytes,
        key_id: str,
        algorithm: str,
        scopes: str,
        http: httpx.Client,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._key = (RSAKey if algorithm == "RS384" else ECKey).import_key(private_key_pem)
        self._key_id = key_id
        self._algorithm = algorithm
        self._scopes = scopes
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def assertion(self) -> str:
        """A fresh client assertion (RFC 7523) as SMART Backend Services specifies it."""
        now = int(self._clock())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": self._token_url,
            "exp": now + ASSERTION_LIFETIME_S,
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": self._algorithm, "kid": self._key_id, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[self._algorithm])

    def header(self) -> dict[str, str]:
        """See Auth."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> None:
        """See Auth."""
        with self._lock:
            self._token = None

    def _fetch(self) -> None:
        try:
            response = self._http.post(
                self._token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self._scopes,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self.assertion(),
                },
            )
        except httpx.HTTPError as exc:
            raise EhrTemporaryError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise EhrTemporaryError(f"token endpoint answered {response.status_code}", response.status_code)
        if response.status_code != 200:
            raise EhrRejected(
                f"token endpoint refused the client ({response.status_code})", response.status_code, _body(response)
            )
        body = response.json()
        self._token = str(body["access_token"])
        self._expires_at = self._clock() + float(body.get("expires_in", 300))


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]
