"""Sign-in sessions of the worklist page: a random id in an HttpOnly cookie, who signed in kept server-side.

The cookie holds nothing but the id (no token, no patient data); the database holds its SHA-256, so a copy of the
table cannot be replayed as cookies. Each session has its own CSRF token for the page's forms.

A session ends at the earliest of: its TTL, the signed-in token's ``exp`` (a session never outlives the token it was
made from), ``idle_s`` without a request, sign-out, or a new sign-in in the same browser. The roles are re-derived
from the stored claims of the verified token at every request (never from anything the browser sends), so a role
revoked at the provider takes effect at the latest when that token expires.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from service.security.principal import Principal, principal_from_claims

__all__ = ["PendingSignIn", "Session", "SessionStore", "Sessions"]


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in person."""

    principal: Principal
    csrf_token: str
    expires_at: datetime
    provider: bool = False  # signed in through the OpenID Connect provider (sign-out also ends it there)


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """An OpenID Connect sign-in waiting for the provider to send the person back."""

    state: str
    nonce: str
    code_verifier: str
    return_to: str
    expires_at: datetime
    smart_iss: str | None = None  # a SMART launch: the EHR's FHIR base (the allow-listed iss) it started from


class SessionStore(Protocol):
    """Where sessions and pending sign-ins live."""

    def save_session(
        self, id_hash: bytes, claims: Mapping[str, Any], csrf_token: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a new session."""

    def find_session(self, id_hash: bytes, now: datetime) -> tuple[dict[str, Any], str, datetime, datetime] | None:
        """(claims, CSRF token, expiry, last use) of a live session."""

    def touch_session(self, id_hash: bytes, now: datetime) -> None:
        """Note that the session was used now."""

    def delete_session(self, id_hash: bytes) -> None:
        """End a session."""

    def save_pending(self, pending: PendingSignIn) -> None:
        """Store a sign-in under way."""

    def take_pending(self, state: str, now: datetime) -> PendingSignIn | None:
        """Remove and return a live pending sign-in (each state works once)."""


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


class Sessions:
    """Creates, finds and ends sessions."""

    def __init__(
        self,
        store: SessionStore,
        clock: Callable[[], datetime],
        ttl_s: int,
        roles_claim: str,
        idle_s: int = 1800,
        sites_claim: str = "sites",
    ) -> None:
        self._store = store
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)
        self._idle = timedelta(seconds=idle_s)
        self._roles_claim = roles_claim
        self._sites_claim = sites_claim

    def start(self, claims: Mapping[str, Any], provider: bool = False) -> tuple[str, Session]:
        """A new session for these (verified) claims: the cookie value and the session.

        It ends at the TTL or at the token's ``exp``, whichever comes first.
        """
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        csrf = secrets.token_urlsafe(32)
        expires_at = now + self._ttl
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            expires_at = min(expires_at, datetime.fromtimestamp(exp, UTC))
        # Only what authorisation needs is kept: who, roles, scopes, sites, launch patient; not the whole ID token.
        kept = {
            k: claims[k]
            for k in ("sub", "scope", "client_id", "azp", "name", "patient", "exp", "fhirUser", "smart_iss")
            if k in claims
        }
        kept["roles"] = [r.value for r in principal_from_claims(claims, self._roles_claim).roles]
        if self._sites_claim in claims:
            kept["sites"] = claims[self._sites_claim]
        if provider:
            kept["refracture_provider"] = True
        self._store.save_session(_hash(session_id), kept, csrf, now, expires_at)
        return session_id, Session(self._principal(kept), csrf, expires_at, provider)

    def _principal(self, kept: Mapping[str, Any]) -> Principal:
        return principal_from_claims(kept, "roles", "session", sites_claim="sites")

    def find(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or None (and an expired or idle one is ended)."""
        if not session_id or len(session_id) > 100:
            return None
        now = self._clock()
        id_hash = _hash(session_id)
        found = self._store.find_session(id_hash, now)
        if found is None:
            return None
        claims, csrf, expires_at, last_seen = found
        exp = claims.get("exp")
        token_over = isinstance(exp, int | float) and datetime.fromtimestamp(exp, UTC) <= now
        if token_over or last_seen + self._idle <= now:
            self._store.delete_session(id_hash)
            return None
        self._store.touch_session(id_hash, now)
        return Session(self._principal(claims), csrf, expires_at, bool(claims.get("refracture_provider")))

    def end(self, session_id: str | None) -> None:
        """Sign out."""
        if session_id:
            self._store.delete_session(_hash(session_id))

    def begin_sign_in(self, return_to: str, ttl_s: int = 600, smart_iss: str | None = None) -> PendingSignIn:
        """State, nonce and PKCE verifier for a new OpenID Connect sign-in (or SMART launch from ``smart_iss``)."""
        pending = PendingSignIn(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(48),
            return_to=return_to,
            expires_at=self._clock() + timedelta(seconds=ttl_s),
            smart_iss=smart_iss,
        )
        self._store.save_pending(pending)
        return pending

    def finish_sign_in(self, state: str) -> PendingSignIn | None:
        """The pending sign-in of a state the provider sent back (once), or None."""
        return self._store.take_pending(state, self._clock()) if state and len(state) <= 100 else None
