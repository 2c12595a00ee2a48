"""SMART App Launch 2.x for the worklist page: the EHR launches refracture (EHR launch), or a person starts at
refracture and picks a patient at the EHR (standalone launch).

- The launch's ``iss`` must be one of REFRACTURE_SMART_FHIR_SERVERS (exact base URLs): refracture never fetches
  metadata from, or sends a person to, a server it was not told to trust.
- The EHR's authorisation server is found in ``{iss}/.well-known/smart-configuration`` (fetched with httpx, no
  redirects, cached for an hour per server).
- The authorisation request is the code flow with PKCE (S256), ``state`` and ``nonce`` (kept server-side, used once,
  the state bound to the browser by the sign-in cookie), ``aud`` = the iss, scopes ``launch`` (EHR launch, with the
  EHR's ``launch`` handle) or ``launch/patient`` (standalone) + ``openid fhirUser``.
- The code is exchanged on a back channel (client secret by HTTP Basic when configured) with the PKCE verifier; the
  token response's ``id_token`` is verified against the EHR's issuer and JWKS (signature, iss, aud = our client id,
  exp, nonce) and its ``fhirUser`` names the signed-in person; ``patient`` is the patient in context.

The EHR's access token is not kept: the worklist reads refracture's own data, never the EHR's FHIR API.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from service.adapters.oidc import code_challenge
from service.security.sessions import PendingSignIn
from service.security.tokens import AuthError, JwksCache, TokenVerifier

__all__ = ["SmartClient", "SmartLaunchResult", "normalise_base"]

_METADATA_TTL_S: Final = 3600.0
_FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def normalise_base(url: str) -> str:
    """A FHIR base URL as compared with the allow-list: no trailing slash."""
    return url.strip().rstrip("/")


@dataclass(frozen=True, slots=True)
class SmartLaunchResult:
    """What a completed launch says: the verified ID token's claims, the patient in context, the grant's life."""

    claims: dict[str, Any]
    fhir_user: str
    patient: str | None
    expires_in: int | None
    scope: str


class _Server:
    """One allow-listed EHR: its smart-configuration and a verifier for its ID tokens."""

    def __init__(self, metadata: dict[str, Any], verifier: TokenVerifier | None, fetched_at: float) -> None:
        self.metadata = metadata
        self.verifier = verifier
        self.fetched_at = fetched_at


class SmartClient:
    """Discovery, authorisation URLs and code exchange against the allow-listed EHRs."""

    def __init__(
        self,
        fhir_servers: Sequence[str],
        client_id: str,
        client_secret: str | None,
        extra_scope: str = "",
        algorithms: Sequence[str] = ("RS256", "RS384", "ES256", "ES384"),
        leeway_s: int = 60,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowed = {normalise_base(u) for u in fhir_servers}
        self.client_id = client_id
        self._secret = client_secret
        self._extra = extra_scope.split()
        self._algorithms = list(algorithms)
        self._leeway_s = leeway_s
        self._http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        self._owns_http = http is None
        self._clock = clock
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()

    def allowed(self, iss: str | None) -> str | None:
        """The allow-listed base URL ``iss`` names, or None."""
        if not iss or len(iss) > 2000:
            return None
        base = normalise_base(iss)
        return base if base in self._allowed else None

    @property
    def only_server(self) -> str | None:
        """The one allow-listed server (a standalone launch needs no iss then)."""
        return next(iter(self._allowed)) if len(self._allowed) == 1 else None

    def _server(self, iss: str) -> _Server:
        with self._lock:
            known = self._servers.get(iss)
            if known is not None and self._clock() - known.fetched_at < _METADATA_TTL_S:
                return known
            try:
                response = self._http.get(
                    f"{iss}/.well-known/smart-configuration", headers={"Accept": "application/json"}
                )
                response.raise_for_status()
                metadata = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if known is not None:
                    return known  # the EHR is briefly unreachable: the metadata an hour old still holds
                raise AuthError("the EHR's SMART configuration cannot be read", "server_error") from exc
            if not isinstance(metadata, dict):
                raise AuthError("the EHR's SMART configuration is not a JSON object", "server_error")
            for field in ("authorization_endpoint", "token_endpoint"):
                value = metadata.get(field)
                if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                    raise AuthError(f"the EHR's SMART configuration has no {field}", "server_error")
            methods = metadata.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise AuthError("the EHR does not support PKCE with S256", "server_error")
            server = _Server(metadata, self._verifier(metadata), self._clock())
            self._servers[iss] = server
            return server

    def _verifier(self, metadata: Mapping[str, Any]) -> TokenVerifier | None:
        issuer = metadata.get("issuer")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            return None  # no OpenID Connect at this EHR: the launch is refused at the exchange (no fhirUser)
        return TokenVerifier(
            issuer, self.client_id, JwksCache(lambda: jwks_uri, self._http), self._algorithms, self._leeway_s
        )

    def authorization_url(self, iss: str, pending: PendingSignIn, redirect_uri: str, launch: str | None) -> str:
        """Where to send the person: the EHR's authorisation endpoint with the SMART parameters.

        Raises:
            AuthError: the EHR's configuration cannot be read or is unusable.
        """
        endpoint = str(self._server(iss).metadata["authorization_endpoint"])
        scope = ["launch" if launch else "launch/patient", "openid", "fhirUser", *self._extra]
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(dict.fromkeys(scope)),
            "state": pending.state,
            "nonce": pending.nonce,
            "aud": iss,
            "code_challenge": code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        if launch:
            query["launch"] = launch
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    def exchange(self, iss: str, code: str, pending: PendingSignIn, redirect_uri: str) -> SmartLaunchResult:
        """The verified result of an authorisation code.

        Raises:
            AuthError: the EHR refused the code, or its answer lacks a valid ID token with fhirUser, or names a
                patient that is not a FHIR id.
        """
        server = self._server(iss)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.code_verifier,
            "client_id": self.client_id,
        }
        endpoint = str(server.metadata["token_endpoint"])
        try:
            if self._secret:
                response = self._http.post(endpoint, data=form, auth=httpx.BasicAuth(self.client_id, self._secret))
            else:
                response = self._http.post(endpoint, data=form)
        except httpx.HTTPError as exc:
            raise AuthError("the EHR's authorisation server cannot be reached", "server_error") from exc
        if response.status_code != 200:
            raise AuthError(f"the EHR refused the code ({response.status_code})")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise AuthError("the EHR's token response is not a JSON object")
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or server.verifier is None:
            raise AuthError("the EHR sent no ID token (ask for openid fhirUser)")
        claims = server.verifier.claims(id_token, self.client_id, pending.nonce)
        fhir_user = claims.get("fhirUser")
        if not isinstance(fhir_user, str) or not fhir_user or len(fhir_user) > 500:
            raise AuthError("the EHR's ID token names no fhirUser")
        patient = body.get("patient")
        if patient is not None and (not isinstance(patient, str) or not _FHIR_ID.match(patient)):
            raise AuthError("the EHR named a patient in context that is not a FHIR id")
        expires_in = body.get("expires_in")
        scope = body.get("scope")
        return SmartLaunchResult(
            claims,
            fhir_user,
            patient,
            expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) else None,
            scope if isinstance(scope, str) else "",
        )

    def close(self) -> None:
        """Close the connections this client opened."""
        if self._owns_http:
            self._http.close()
