"""From a bearer token to a principal: development tokens first (when configured), then the issuer's JWTs."""

from __future__ import annotations

import hashlib
from typing import Final

import httpx

from service.platform.config import Settings
from service.security.principal import Principal
from service.security.tokens import AuthError, DevTokens, JwksCache, TokenVerifier, discover_jwks_url

__all__ = ["Authenticator", "make_authenticator"]

_CACHE_S: Final = 300.0
_CACHE_MAX: Final = 10_000


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Checks bearer tokens."""

    def __init__(
        self,
        dev: DevTokens,
        verifier: TokenVerifier | None,
        http: httpx.Client | None = None,
    ) -> None:
        self._dev = dev
        self.verifier = verifier
        self._http = http
        # Verified JWTs by digest: an interface engine sends the same token with every resource, and checking its
        # RS256/ES256 signature and claims each time cost more than storing the resource.
        self._verified: dict[bytes, tuple[Principal, float]] = {}

    def cached(self, token: str) -> Principal | None:
        """The principal of a development token or of a JWT verified lately and not expired; None when the token
        must be checked (``authenticate``). Does no I/O, so it may run on the event loop."""
        if self._dev:
            found = self._dev.verify(token)
            if found is not None:
                return found
        entry = self._verified.get(_digest(token))
        if entry is not None and self.verifier is not None and self.verifier.now() < entry[1]:
            return entry[0]
        return None

    @property
    def configured(self) -> bool:
        """Whether any token could be accepted at all."""
        return bool(self._dev) or self.verifier is not None

    def authenticate(self, token: str) -> Principal:
        """The principal of a token.

        Raises:
            AuthError: no configured way accepts it.
        """
        if self._dev:
            found = self._dev.verify(token)
            if found is not None:
                return found
        if self.verifier is None:
            raise AuthError("the token is not valid")
        principal, expires_at = self.verifier.verify_until(token)
        if len(self._verified) >= _CACHE_MAX:
            self._verified.clear()  # a flood of distinct valid tokens: start over rather than grow
        # Kept until the token expires, and never longer than _CACHE_S (a key the issuer withdrew stops counting).
        self._verified[_digest(token)] = (principal, min(expires_at, self.verifier.now() + _CACHE_S))
        return principal

    def close(self) -> None:
        """Close the JWKS client's connections."""
        if self._http is not None:
            self._http.close()


def make_authenticator(settings: Settings, http: httpx.Client | None = None) -> Authenticator:
    """The authenticator the settings describe (a JWT verifier only when an issuer and audience are set)."""
    dev = DevTokens(settings.dev_tokens, settings.auth_roles_claim, settings.auth_sites_claim)
    if not (settings.auth_issuer and settings.auth_audience):
        return Authenticator(dev, None)
    client = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
    issuer = settings.auth_issuer
    jwks_url = settings.auth_jwks_url
    resolved: list[str] = []

    def url() -> str:
        # Discovery happens on first use, not at start-up: the API starts even while the issuer is unreachable.
        if not resolved:
            resolved.append(jwks_url or discover_jwks_url(issuer, client))
        return resolved[0]

    verifier = TokenVerifier(
        issuer,
        settings.auth_audience,
        JwksCache(url, client),
        settings.auth_algorithms,
        settings.auth_leeway_s,
        settings.auth_roles_claim,
        settings.auth_sites_claim,
    )
    return Authenticator(dev, verifier, client if http is None else None)
