"""The EHR's JWT on every CDS Hooks call (cds-hooks 2.0, 'Trusting CDS Clients').

A call is accepted when its bearer JWT is signed (asymmetric algorithms only) by a key of an allow-listed EHR
(``iss``) — from the EHR's configured JWKS, or from the ``jku`` header when that URL is on the EHR's allow-list —
names this CDS service in ``aud``, has not expired, was not issued in the future, expires at most
``max_lifetime_s`` after now, and carries a ``jti`` not seen before (the store remembers it until it expires). The
same checks as Inferno's CRD test kit makes of a CDS client's token.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError

from service.platform.config import Settings
from service.security.tokens import ASYMMETRIC_ALGORITHMS, AuthError, JwksCache, fixed_reason

__all__ = ["CdsIssuer", "CdsTokenVerifier", "make_cds_verifier"]

# (issuer, jti, expiry, now) -> whether the jti is new.
JtiClaim = Callable[[str, str, datetime, datetime], bool]


@dataclass(frozen=True, slots=True)
class CdsIssuer:
    """An EHR allowed to call: its ``iss``, its JWKS, and the ``jku`` URLs it may name instead."""

    issuer: str
    jwks_url: str | None
    jku: tuple[str, ...] = ()


def _segment(token: str, index: int) -> dict[str, Any]:
    try:
        part = token.split(".")[index]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, IndexError, UnicodeDecodeError):
        raise AuthError("the token is not a JWT") from None
    if not isinstance(value, dict):
        raise AuthError("the token is not a JWT")
    return value


class CdsTokenVerifier:
    """Checks the JWTs EHRs send with CDS Hooks calls."""

    def __init__(
        self,
        issuers: Mapping[str, CdsIssuer],
        algorithms: Sequence[str],
        http: httpx.Client,
        claim_jti: JtiClaim,
        leeway_s: int = 60,
        max_lifetime_s: int = 300,
        now: Callable[[], float] = time.time,
    ) -> None:
        unsafe = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if unsafe:
            raise ValueError(f"not allowed for CDS Hooks tokens: {sorted(unsafe)} (asymmetric algorithms only)")
        self._issuers = dict(issuers)
        self._algorithms = list(algorithms)
        self._http = http
        self._claim_jti = claim_jti
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        self._now = now
        self._caches: dict[str, JwksCache] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the JWKS client's connections."""
        self._http.close()

    @property
    def configured(self) -> bool:
        """Whether any EHR may call at all."""
        return bool(self._issuers)

    def _keys_url(self, issuer: CdsIssuer, header: Mapping[str, Any]) -> str:
        jku = header.get("jku")
        if jku is not None:
            # An attacker's token can name any jku: only the EHR's own allow-listed URLs are ever fetched.
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthError("the token's jku is not on the allow-list for its issuer")
            return jku
        if issuer.jwks_url is None:
            raise AuthError("the token names no jku and its issuer has no JWKS configured")
        return issuer.jwks_url

    def _cache(self, url: str) -> JwksCache:
        with self._lock:
            cache = self._caches.get(url)
            if cache is None:
                cache = self._caches[url] = JwksCache(lambda: url, self._http)
            return cache

    def verify(self, token: str, audiences: Sequence[str]) -> dict[str, Any]:
        """The verified claims of a CDS Hooks call's JWT.

        Args:
            token: the bearer token.
            audiences: the URLs this service answers to for this call (any one may be the ``aud``).

        Raises:
            AuthError: why the token is refused, in words safe to send back.
        """
        header = _segment(token, 0)
        if header.get("alg") not in self._algorithms:
            raise AuthError("the token's algorithm is not allowed (asymmetric algorithms only)")
        unverified_iss = _segment(token, 1).get("iss")
        issuer = self._issuers.get(unverified_iss) if isinstance(unverified_iss, str) else None
        if issuer is None:
            raise AuthError("the token's issuer is not an EHR allowed to call")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = self._cache(self._keys_url(issuer, header)).keys(kid)
        try:
            decoded = jwt.decode(token, keys, self._algorithms)
        except JoseError as exc:
            raise AuthError(fixed_reason(exc)) from None
        except (ValueError, TypeError):
            raise AuthError("the token is not a JWT") from None
        now = int(self._now())
        registry = jwt.JWTClaimsRegistry(
            now=lambda: now,
            leeway=self._leeway_s,
            iss={"essential": True, "value": issuer.issuer},
            aud={"essential": True, "values": list(audiences)},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        claims = dict(decoded.claims)
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise AuthError("the token has expired") from None
        except JoseError as exc:
            raise AuthError(fixed_reason(exc)) from None
        expires = int(claims["exp"])
        if expires > now + self._max_lifetime_s + self._leeway_s:
            raise AuthError(f"the token lives too long (exp at most {self._max_lifetime_s} s ahead)")
        if not self._claim_jti(
            issuer.issuer,
            str(claims["jti"]),
            datetime.fromtimestamp(expires + self._leeway_s, UTC),
            datetime.fromtimestamp(now, UTC),
        ):
            raise AuthError("the token was already used (jti replayed)")
        return claims


def make_cds_verifier(settings: Settings, claim_jti: JtiClaim, http: httpx.Client | None = None) -> CdsTokenVerifier:
    """The verifier the settings describe (REFRACTURE_CDS_ISSUERS, REFRACTURE_CDS_ALGORITHMS, ...)."""
    issuers = {iss: CdsIssuer(iss, conf.jwks_url, tuple(conf.jku)) for iss, conf in settings.cds_issuers.items()}
    client = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
    return CdsTokenVerifier(
        issuers,
        settings.cds_algorithms,
        client,
        claim_jti,
        leeway_s=settings.auth_leeway_s,
        max_lifetime_s=settings.cds_token_max_lifetime_s,
    )
