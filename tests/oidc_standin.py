"""An OpenID Connect provider stand-in: discovery, authorize (signs in a configured person at once), token (checks
the client's secret, the redirect URI and the PKCE verifier), and the JWKS. Served on a loopback port by uvicorn."""

from __future__ import annotations

import secrets
from typing import Any

from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.authorization import (
    LoopbackStandIn,
    code_redirect,
    exchange_code,
    id_token,
    jwks_response,
    token_form,
)

CLIENT_ID = "refracture-worklist"
CLIENT_SECRET = secrets.token_urlsafe(16)  # made per run: no credential is ever committed


class OidcStandIn:
    """The provider, with the person who will sign in and everything it was asked."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
        self.person: dict[str, Any] = {"sub": "nurse.ada", "name": "Ada Nurse", "roles": ["care-coordinator"]}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.end_session = False  # whether discovery offers an end_session_endpoint
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, _: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"],
                **({"end_session_endpoint": f"{self.issuer}/logout"} if self.end_session else {}),
            }
        )

    async def authorize(self, request: Request) -> Response:
        query = dict(request.query_params)
        self.authorize_requests.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        return code_redirect(self.codes, query)

    async def token(self, request: Request) -> Response:
        form = await token_form(request)
        self.token_requests.append(form)
        asked = exchange_code(request, form, self.codes, CLIENT_ID, CLIENT_SECRET)
        if isinstance(asked, Response):
            return asked
        signed = id_token(self.key, self.issuer, CLIENT_ID, asked["nonce"], self.person)
        return JSONResponse({"id_token": signed, "access_token": "opaque", "token_type": "Bearer"})

    async def jwks(self, _: Request) -> Response:
        return jwks_response(self.key)


class RunningOidc(LoopbackStandIn):
    """The stand-in on a loopback port, in a background thread."""

    def __init__(self) -> None:
        super().__init__()
        self.issuer = self.url
        self.provider = OidcStandIn(self.issuer)
        self.serve(self.provider.app)

    def sign_in_settings(self) -> dict[str, Any]:
        """The settings that make refracture sign people in here (and accept no development tokens)."""
        return {
            "auth_issuer": self.issuer,
            "auth_audience": "refracture-api",
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "auth_dev_tokens": {},
        }
