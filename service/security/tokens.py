"""Bearer tokens: OAuth 2.0 JWTs checked against the issuer's JWKS, and static development tokens.

A JWT is accepted only when its signature verifies with a key of the issuer's JWKS under an allow-listed algorithm
(never ``none``, never HMAC: the allow-list holds asymmetric algorithms only, so a public key can never be used as a
shared secret), and its ``iss``, ``aud``, ``exp`` (and ``nbf`` when present) check out within the leeway. Keys rotate:
an unknown ``kid`` makes the verifier fetch the JWKS again, at most once per ``refresh_interval_s``.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import httpx
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from service.security.principal import Principal, principal_from_claims

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "AuthError",
    "DevTokens",
    "JwksCache",
    "TokenVerifier",
    "discover_jwks_url",
    "fixed_reason",
]

ASYMMETRIC_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})


class AuthError(Exception):
    """The caller is not authenticated; the message says why in words safe to send back (no token content)."""

    def __init__(self, message: str, error: str = "invalid_token") -> None:
        super().__init__(message)
        self.error = error  # the RFC 6750 error code for WWW-Authenticate


def discover_jwks_url(issuer: str, http: httpx.Client) -> str:
    """The ``jwks_uri`` of an OpenID Connect issuer's discovery document."""
    response = http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    response.raise_for_status()
    url = response.json().get("jwks_uri")
    if not isinstance(url, str):
        raise AuthError("the issuer's discovery document has no jwks_uri", "server_error")
    return url


class JwksCache:
    """The issuer's signing keys, fetched on first use and again when a token names a key not seen yet."""

    def __init__(
        self,
        url: Callable[[], str],
        http: httpx.Client,
        refresh_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._http = http
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = -1e18
        self._lock = threading.Lock()

    def keys(self, kid: str | None) -> KeySet:
        """The key set, refreshed first when it lacks ``kid`` (rate-limited: a flood of made-up kids cannot make
        refracture hammer the issuer)."""
        with self._lock:
            known = self._keys is not None and (kid is None or _has_kid(self._keys, kid))
            if not known and self._clock() - self._fetched_at >= self._refresh_interval_s:
                self._fetched_at = self._clock()
                try:
                    response = self._http.get(self._url())
                    response.raise_for_status()
                    self._keys = KeySet.import_key_set(response.json())
                except (httpx.HTTPError, ValueError, JoseError) as exc:
                    if self._keys is None:
                        raise AuthError("the issuer's keys cannot be fetched", "server_error") from exc
            if self._keys is None:
                raise AuthError("the issuer's keys cannot be fetched", "server_error")
            return self._keys


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


class TokenVerifier:
    """Checks OAuth 2.0 access tokens (and OpenID Connect ID tokens) that are JWTs."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks: JwksCache,
        algorithms: Sequence[str],
        leeway_s: int = 60,
        roles_claim: str = "roles",
        sites_claim: str = "sites",
        now: Callable[[], float] = time.time,
    ) -> None:
        unsafe = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if unsafe:
            raise ValueError(f"not allowed for access tokens: {sorted(unsafe)} (asymmetric algorithms only)")
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwks
        self._algorithms = list(algorithms)
        self._leeway_s = leeway_s
        self._roles_claim = roles_claim
        self._sites_claim = sites_claim
        self._sites_claim = sites_claim
        self._now = now

    def claims(self, token: str, audience: str | None = None, nonce: str | None = None) -> dict[str, Any]:
        """The verified claims of a JWT.

        Raises:
            AuthError: bad signature, algorithm not allowed, wrong issuer or audience, expired, not yet valid.
        """
        try:
            # The header's kid is untrusted: it only picks the key the signature must verify with.
            decoded = jwt.decode(token, self._jwks.keys(_kid(token)), self._algorithms)
        except AuthError:
            raise
        except JoseError as exc:
            raise AuthError(fixed_reason(exc)) from None
        except (ValueError, TypeError):
            raise AuthError("the token is not a JWT") from None
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self._issuer},
            "aud": {"essential": True, "value": audience or self._audience},
            "exp": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(now=lambda: int(self._now()), leeway=self._leeway_s, **options)
        try:
            registry.validate(decoded.claims)
        except ExpiredTokenError:
            raise AuthError("the token has expired") from None
        except JoseError as exc:
            raise AuthError(fixed_reason(exc)) from None
        return dict(decoded.claims)

    def verify(self, token: str) -> Principal:
        """The principal of a valid access token.

        Raises:
            AuthError: the token is not valid (see ``claims``).
        """
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """The principal of a valid access token and when the token expires (its ``exp``, seconds since the epoch).

        Raises:
            AuthError: the token is not valid (see ``claims``).
        """
        claims = self.claims(token)
        principal = principal_from_claims(claims, self._roles_claim, sites_claim=self._sites_claim)
        return principal, float(claims["exp"])

    def now(self) -> float:
        """The verifier's clock (seconds since the epoch), the one ``exp`` is compared with."""
        return self._now()


def _kid(token: str) -> str | None:
    try:
        head = token.split(".", 1)[0]
        value = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        kid = value.get("kid") if isinstance(value, dict) else None
        return kid if isinstance(kid, str) else None
    except (ValueError, UnicodeDecodeError):
        return None


# Fixed texts only: joserfc's descriptions quote the token (``Algorithm of '<alg>' is not supported``, a crit header's
# names), and whatever we answer goes into a WWW-Authenticate header and an OperationOutcome.
_REASONS: Final[dict[str, str]] = {
    "unsupported_algorithm": "the token is not valid (its algorithm is not allowed)",
    "missing_algorithm": "the token is not valid (it names no algorithm)",
    "bad_signature": "the token is not valid (its signature does not verify)",
    "missing_key": "the token is not valid (no key of the issuer matches)",
}
# Claims a refusal may name: the ones we check (the name comes from our own checks, but is listed all the same).
_CLAIMS: Final = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti", "nonce", "sub"})


def fixed_reason(exc: JoseError) -> str:
    """Why a token was refused, in a fixed text that quotes nothing of the token."""
    if isinstance(exc, ClaimError):
        if exc.claim == "nbf":
            return "the token is not yet valid (nbf)"
        claim = exc.claim if exc.claim in _CLAIMS else "a"
        return f"the token's {claim} claim is missing or not valid"
    return _REASONS.get(exc.error, "the token is not valid")


class DevTokens:
    """Static tokens from configuration, for development and tests only (refused in production by Settings)."""

    def __init__(
        self, tokens: Mapping[str, Mapping[str, Any]], roles_claim: str = "roles", sites_claim: str = "sites"
    ) -> None:
        self._tokens = dict(tokens)
        self._roles_claim = roles_claim
        self._sites_claim = sites_claim
        self._principals: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal | None:
        """The principal of a configured token, or None (compared in constant time)."""
        for known, claims in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                # Built once per token, as a verified JWT's principal is kept until it expires (Authenticator).
                principal = self._principals.get(known)
                if principal is None:
                    principal = principal_from_claims(
                        claims, self._roles_claim, source="dev-token", sites_claim=self._sites_claim
                    )
                    self._principals[known] = principal
                return principal
        return None

    def __bool__(self) -> bool:
        return bool(self._tokens)
