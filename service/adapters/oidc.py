"""The hospital's OpenID Connect provider, for signing people in to the worklist page (code flow with PKCE).

Discovery gives the endpoints; the authorisation request carries state, nonce and an S256 code challenge; the code
comes back to /auth/callback and is exchanged here, on a back channel, with the verifier and the client's secret.
The ID token is then checked like any token (signature by the issuer's JWKS, iss, aud = our client id, exp, nonce).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any
from urllib.parse import urlencode

import httpx

from service.security.sessions import PendingSignIn
from service.security.tokens import AuthError

__all__ = ["OidcClient", "code_challenge"]


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


class OidcClient:
    """Authorisation URLs and code exchange against one provider."""

    def __init__(
        self, issuer: str, client_id: str, client_secret: str | None, scope: str, http: httpx.Client | None = None
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
        self._owns_http = http is None
        self._metadata: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _discovery(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                try:
                    response = self._http.get(f"{self.issuer}/.well-known/openid-configuration")
                    response.raise_for_status()
                    metadata = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    raise AuthError("the sign-in provider cannot be reached", "server_error") from exc
                if metadata.get("issuer", "").rstrip("/") != self.issuer:
                    raise AuthError("the sign-in provider names another issuer", "server_error")
                self._metadata = metadata
            return self._metadata

    def authorization_url(self, pending: PendingSignIn, redirect_uri: str) -> str:
        """Where to send the person to sign in."""
        endpoint = self._discovery().get("authorization_endpoint")
        if not isinstance(endpoint, str):
            raise AuthError("the sign-in provider has no authorization endpoint", "server_error")
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self._scope,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": code_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    def exchange(self, code: str, pending: PendingSignIn, redirect_uri: str) -> str:
        """The ID token for an authorisation code.

        Raises:
            AuthError: the provider refused the code or answered without an ID token.
        """
        endpoint = self._discovery().get("token_endpoint")
        if not isinstance(endpoint, str):
            raise AuthError("the sign-in provider has no token endpoint", "server_error")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.code_verifier,
            "client_id": self.client_id,
        }
        try:
            # A confidential client authenticates with HTTP Basic; a public one sends only its id and the verifier.
            if self._secret:
                response = self._http.post(endpoint, data=form, auth=httpx.BasicAuth(self.client_id, self._secret))
            else:
                response = self._http.post(endpoint, data=form)
        except httpx.HTTPError as exc:
            raise AuthError("the sign-in provider cannot be reached", "server_error") from exc
        if response.status_code != 200:
            raise AuthError(f"the sign-in provider refused the code ({response.status_code})")
        try:
            id_token = response.json().get("id_token")
        except ValueError:
            id_token = None
        if not isinstance(id_token, str):
            raise AuthError("the sign-in provider sent no ID token")
        return id_token

    def end_session_url(self, post_logout_redirect_uri: str) -> str | None:
        """Where to send the person to end the session at the provider (OpenID Connect RP-Initiated Logout 1.0:
        client_id and post_logout_redirect_uri), or None when the provider offers no end_session_endpoint.

        Raises:
            AuthError: the provider's discovery document cannot be read.
        """
        endpoint = self._discovery().get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"

    def close(self) -> None:
        """Close the connections this client opened."""
        if self._owns_http:
            self._http.close()
